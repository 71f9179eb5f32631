"""Two processes (torchrun, gloo, CPU) on a tiny stage: prompts split across ranks, groups scored together, a
checkpoint written by two processes inside epoch 1 resumes exactly (same data order, weights and metrics), and a
re-run with only the export left completes it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAGE = REPO / "stages" / "tiny" / "stage1_video.yaml"

# A reward that scores nothing and records which rank saw which prompts in one call.
RECORDING_REWARD = '''
import json, os

def record(prompts, completions, **kwargs):
    path = os.path.join(os.environ["HS_REWARD_LOG"], "rank%s.jsonl" % os.environ.get("RANK", "0"))
    with open(path, "a") as handle:
        handle.write(json.dumps({"ids": list(kwargs.get("id") or [])}) + "\\n")
    return [0.0] * len(completions)
'''


@pytest.fixture(scope="module")
def four_videos(sample_data, tmp_path_factory) -> Path:
    """Four video prompts: with 2 processes and one prompt per process per step, an epoch is 2 steps."""
    from hs_rl.data.convert import convert_file
    from hs_rl.data.records import write_records

    path = tmp_path_factory.mktemp("dist_data") / "video.jsonl"
    write_records([r for r in convert_file(sample_data["train_json"], media_root=sample_data["media_root"])
                   if r.modality == "video"][:4], path)
    return path


def torchrun(model: Path, dataset: Path, out: Path, reward: Path, log_dir: Path) -> str:
    """Two epochs (4 steps) of the tiny stage on 2 processes, a checkpoint after every step."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "hs_rl.train", str(STAGE), "--model_name_or_path", str(model), "--dataset", str(dataset),
               "--output_dir", str(out), "--max_steps", "-1", "--num_train_epochs", "2", "--save_steps", "1",
               "--reward_funcs", "format", "accuracy", f"{reward}:record", "--reward_weights", "1", "1", "0",
               "--report_to", "none", "--ddp_backend", "gloo"]
    env = {**os.environ, "HS_REWARD_LOG": str(log_dir), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout + result.stderr


def calls(log_dir: Path, rank: int) -> list[list[str]]:
    path = log_dir / f"rank{rank}.jsonl"
    return [json.loads(line)["ids"] for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_split_prompts_group_and_resume_inside_epoch_1(tiny_model, four_videos, tmp_path):
    from hs_rl.grpo.checkpoints import MARKER
    from tests.grpo.test_resume import assert_same_run, metrics

    reward = tmp_path / "recording_reward.py"
    reward.write_text(RECORDING_REWARD)
    logs = {name: tmp_path / f"rewards_{name}" for name in ("reference", "resumed", "rerun")}
    for folder in logs.values():
        folder.mkdir()
    reference = tmp_path / "reference"
    torchrun(tiny_model["full"], four_videos, reference, reward, logs["reference"])

    rank0, rank1 = calls(logs["reference"], 0), calls(logs["reference"], 1)
    assert len(rank0) == len(rank1) == 4  # one reward call per rank per step
    for ids0, ids1 in zip(rank0, rank1):
        # per-device batch 4 = one prompt's 4 completions, whole on one rank, scored in one call
        assert len(set(ids0)) == 1 and len(ids0) == 4 and len(set(ids1)) == 1 and len(ids1) == 4
        assert set(ids0) != set(ids1), "both ranks got the same prompt"
    epoch0 = [rank0[0][0], rank1[0][0], rank0[1][0], rank1[1][0]]
    epoch1 = [rank0[2][0], rank1[2][0], rank0[3][0], rank1[3][0]]
    assert len(set(epoch0)) == len(set(epoch1)) == 4 and epoch0 != epoch1  # each epoch: every prompt, reshuffled
    # the advantages were computed per group: within a prompt's group they sum to zero
    groups: Counter = Counter()
    for line in (reference / "completions.jsonl").read_text().splitlines():
        row = json.loads(line)
        groups[(row["step"], row["id"])] += row["advantage"]
    assert groups and all(abs(total) < 1e-4 for total in groups.values())
    checkpoint = reference / "checkpoint-3"
    assert (checkpoint / MARKER).is_file()
    assert (checkpoint / "rng_state_0.pth").is_file() and (checkpoint / "rng_state_1.pth").is_file()
    assert json.loads((checkpoint / MARKER).read_text())["processes"] == 2

    # killed after checkpoint-3, inside epoch 1: the same command trains step 4 on epoch 1's order
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(checkpoint, resumed / "checkpoint-3")
    torchrun(tiny_model["full"], four_videos, resumed, reward, logs["resumed"])
    assert [calls(logs["resumed"], r) for r in (0, 1)] == [rank0[3:], rank1[3:]]
    assert_same_run(reference, resumed)

    # final/ lost after the last checkpoint: the same command (DDP) loads it and exports, training nothing
    shutil.rmtree(resumed / "final")
    torchrun(tiny_model["full"], four_videos, resumed, reward, logs["rerun"])
    assert not (logs["rerun"] / "rank0.jsonl").exists()
    assert_same_run(reference, resumed)
    assert [h["step"] for h in metrics(resumed) if "loss" in h] == [1, 2, 3, 4]
    assert (resumed / "final" / "spk_dict.pt").is_file()


def test_which_towers_run_is_the_same_on_every_rank(tiny_model):
    """`run_all_towers` follows a rank-independent rule: both towers in every forward with several processes under
    ZeRO-3/FSDP or with a trained tower (DDP/ZeRO-1/2 reduce its gradients on every rank); an explicit `false`
    there is refused in one line instead of hanging or crashing the run. Frozen, replicated towers need nothing.
    The processes themselves: tests/grpo/test_deepspeed_cpu.py::test_ranks_stay_in_lockstep."""
    from types import SimpleNamespace

    from hs_rl.errors import UserError
    from hs_rl.grpo.trainer import OmniGRPOTrainer
    from hs_rl.omni.loading import freeze_encoders, load_thinker

    thinker = load_thinker(tiny_model["thinker"])

    def rule(processes: int, sharded: bool, asked: bool | None) -> bool:
        trainer = SimpleNamespace(accelerator=SimpleNamespace(num_processes=processes, unwrap_model=lambda m: m),
                                  model=thinker, _sharded=sharded)
        return OmniGRPOTrainer._towers_rule(trainer, asked)

    freeze_encoders(thinker)  # the recipe: both towers frozen
    assert rule(2, sharded=False, asked=None) is False  # DDP / ZeRO-2: a tower runs only where a row needs it
    assert rule(2, sharded=True, asked=None) is True  # ZeRO-3 / FSDP
    assert rule(2, sharded=False, asked=True) is True and rule(1, sharded=False, asked=None) is False
    with pytest.raises(UserError, match="run_all_towers: false with 2 processes: ZeRO-3"):  # one line, no traceback
        rule(2, sharded=True, asked=False)
    freeze_encoders(thinker, audio=False)  # a trained audio tower
    assert rule(2, sharded=False, asked=None) is True  # DDP / ZeRO-1/2: its gradient buckets must match
    assert rule(1, sharded=False, asked=None) is False  # one process: nothing to match
    with pytest.raises(UserError, match="trained audio tower"):
        rule(2, sharded=False, asked=False)


DIFFERENT_RECORDS = '''
import sys
from transformers import TrainingArguments
from hs_rl.data.records import Record
from hs_rl.errors import UserError
from hs_rl.train import check_same_records_on_every_process

config = TrainingArguments(output_dir=sys.argv[1], use_cpu=True, ddp_backend="gloo", report_to=[])
rank = config.process_index
make = lambda i: Record(id=f"r{i}", task_type="t", modality="audio", question="q?", question_type="single_choice",
                        answer="A", options=["A. x", "B. y"], audio="a.wav")
records = [make(i) for i in range(3 if rank == 0 else 2)]
check_same_records_on_every_process(config, [make(i) for i in range(3)], {})  # the same lists: no error
try:
    check_same_records_on_every_process(config, records, {})
except UserError as error:
    print(f"rank {rank}: {error}")
    sys.exit(0)
sys.exit(3)
'''


@pytest.mark.slow
def test_processes_that_read_different_records_stop_together(tmp_path):
    """With skip_invalid, a clip readable on one node and not another gives the processes different records: every
    process stops with the same one-line error before any weight loads, instead of a hang at the end of the run."""
    script = tmp_path / "different_records.py"
    script.write_text(DIFFERENT_RECORDS)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(script), str(tmp_path / "out")], capture_output=True, text=True, timeout=180,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for rank in (0, 1):
        assert f"rank {rank}: the processes read different training records (process 0: 3, process 1: 2)" \
            in result.stdout, result.stdout
