"""What the trainer logs about itself: `shared_prefix/packed` over every forward chunk, and
`rewards/<name>/errors` summed over ranks (two processes)."""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hs_rl.grpo.trainer as trainer_module
from hs_rl.train import build_trainer
from tests.grpo.trainer_helpers import interleaved, sample_records, stage_args

REPO = Path(__file__).resolve().parents[2]


def test_shared_prefix_packed_counts_every_chunk(tiny_model, sample_data, tmp_path, monkeypatch):
    """One step of a 9-row generation batch (3 groups) in micro-batches of 3: the old and reference log-probs run
    in chunks of whole groups (packed), the loss on 3 rows TRL shuffled (not whole groups). The metric is the
    fraction of all those chunks that ran packed; it used to be the loss chunk's alone, 0 or 1."""
    chunks = {"packed": 0, "plain": 0}

    def counting(kind, original):
        def counted(*args, **kwargs):
            chunks[kind] += 1
            return original(*args, **kwargs)
        return counted

    monkeypatch.setattr(trainer_module, "shared_prefix_logps", counting("packed", trainer_module.shared_prefix_logps))
    monkeypatch.setattr(trainer_module, "lm_inputs", counting("plain", trainer_module.lm_inputs))
    chosen = interleaved(sample_records(sample_data), count=3)
    trainer = build_trainer(*stage_args(tiny_model["full"], chosen, tmp_path, per_device_train_batch_size=3,
                                        num_generations=3, steps_per_generation=3, beta=0.1, temperature=0.7,
                                        max_completion_length=6))
    assert trainer.shared_prefix
    trainer.train()
    assert chunks["packed"] and chunks["plain"], chunks  # the layout mixes both paths
    logged = next(h for h in trainer.state.log_history if "shared_prefix/packed" in h)["shared_prefix/packed"]
    assert logged == pytest.approx(chunks["packed"] / (chunks["packed"] + chunks["plain"]))


class _Brevity:
    """A reward given as a callable instance (no __name__ of its own: TRL names it after its class)."""

    def __call__(self, completions, limit=0, **kwargs):
        raise RuntimeError("cannot score")


def _brief(completions, limit=0, **kwargs):
    raise RuntimeError("cannot score")


@pytest.mark.parametrize("reward", [_Brevity(), functools.partial(_brief, limit=3)], ids=["instance", "partial"])
def test_reward_errors_are_counted_under_the_name_trl_logs(reward):
    """The trainer gathers the error counts by TRL's reward names, so the guard must count under that name."""
    from trl.trainer.utils import get_callable_name

    from hs_rl.rewards.guard import guard_reward

    counter: dict[str, int] = {}
    guarded = guard_reward(reward, "zero", counter)
    assert guarded(completions=["a", "b"], id=["x", "y"]) == [0.0, 0.0]
    assert counter == {get_callable_name(guarded): 2}


# A reward that fails on rank 1 only; with reward_errors: zero each of its completions there scores 0, counted
RANK1_FAILS = '''
import os

def rank1_fails(completions, **kwargs):
    if os.environ.get("RANK") == "1":
        raise RuntimeError("rank 1 cannot score")
    return [0.0] * len(completions)
'''


@pytest.mark.slow
def test_reward_errors_are_summed_over_ranks(tiny_model, sample_data, tmp_path):
    """Two processes, one step, 4 completions per rank: rank 1's four errors are in the log. Each rank used to log
    its own count, and only rank 0's reaches the log (none here); the gather is a collective every rank joins."""
    from hs_rl.data.records import write_records

    dataset = tmp_path / "video.jsonl"
    write_records([r for r in sample_records(sample_data) if r.modality == "video"][:2], dataset)
    reward = tmp_path / "rank1_reward.py"
    reward.write_text(RANK1_FAILS)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "hs_rl.train", str(REPO / "stages" / "tiny" / "stage1_video.yaml"),
               "--model_name_or_path", str(tiny_model["full"]), "--dataset", str(dataset), "--output_dir", str(out),
               "--max_steps", "1", "--save_strategy", "no", "--reward_funcs", "accuracy", f"{reward}:rank1_fails",
               "--reward_weights", "1", "0", "--reward_errors", "zero", "--report_to", "none", "--ddp_backend", "gloo"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    history = json.loads((out / "log_history.json").read_text())
    logged = [h["rewards/rank1_fails/errors"] for h in history if "rewards/rank1_fails/errors" in h]
    assert logged == [4.0], history
