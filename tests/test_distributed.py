"""Two processes (torchrun, gloo, CPU) on a tiny stage: prompts split across ranks, groups scored together,
and a checkpoint written by two processes resumes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
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
def video_jsonl(sample_data, tmp_path_factory) -> Path:
    from hs_rl.data.convert import convert_file
    from hs_rl.data.records import write_records

    path = tmp_path_factory.mktemp("dist_data") / "video.jsonl"
    write_records([r for r in convert_file(sample_data["train_json"], media_root=sample_data["media_root"])
                   if r.modality == "video"], path)
    return path


def torchrun(model: Path, dataset: Path, out: Path, reward: Path, log_dir: Path, max_steps: int) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "hs_rl.train", str(STAGE), "--model_name_or_path", str(model), "--dataset", str(dataset),
               "--output_dir", str(out), "--max_steps", str(max_steps), "--save_steps", "1",
               "--reward_funcs", "format", "accuracy", f"{reward}:record", "--reward_weights", "1", "1", "0",
               "--report_to", "none", "--ddp_backend", "gloo"]
    env = {**os.environ, "HS_REWARD_LOG": str(log_dir), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]


def calls(log_dir: Path, rank: int) -> list[list[str]]:
    path = log_dir / f"rank{rank}.jsonl"
    return [json.loads(line)["ids"] for line in path.read_text().splitlines()]


def test_two_processes_split_prompts_group_and_resume(tiny_model, video_jsonl, tmp_path):
    from hs_rl.grpo.checkpoints import MARKER

    reward = tmp_path / "recording_reward.py"
    reward.write_text(RECORDING_REWARD)
    logs = tmp_path / "rewards"
    logs.mkdir()
    out = tmp_path / "run"
    torchrun(tiny_model["full"], video_jsonl, out, reward, logs, max_steps=2)

    rank0, rank1 = calls(logs, 0), calls(logs, 1)
    assert len(rank0) == len(rank1) == 2  # one reward call per rank per step
    for ids0, ids1 in zip(rank0, rank1):
        # per-device batch 4 = one prompt's 4 completions, whole on one rank, scored in one call
        assert len(set(ids0)) == 1 and len(ids0) == 4 and len(set(ids1)) == 1 and len(ids1) == 4
        assert set(ids0) != set(ids1), "both ranks got the same prompt"
    # the advantages were computed per group: within a prompt's group they sum to zero
    groups: Counter = Counter()
    for line in (out / "completions.jsonl").read_text().splitlines():
        row = json.loads(line)
        groups[(row["step"], row["id"])] += row["advantage"]
    assert groups and all(abs(total) < 1e-4 for total in groups.values())

    checkpoint = out / "checkpoint-2"
    assert (checkpoint / MARKER).is_file()
    assert (checkpoint / "rng_state_0.pth").is_file() and (checkpoint / "rng_state_1.pth").is_file()
    assert json.loads((checkpoint / MARKER).read_text())["processes"] == 2

    # the same command with one more step resumes from the 2-process checkpoint and trains only step 3
    torchrun(tiny_model["full"], video_jsonl, out, reward, logs, max_steps=3)
    assert len(calls(logs, 0)) == 3 and len(calls(logs, 1)) == 3
    steps = [h["step"] for h in json.loads((out / "log_history.json").read_text()) if "loss" in h]
    assert steps == [1, 2, 3]
    assert (out / "final" / "spk_dict.pt").is_file()
