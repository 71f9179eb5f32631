"""DeepSpeed ZeRO-2 and ZeRO-3 on CPU: two processes, the repository's own accelerate configs and DeepSpeed
JSONs (launch/accelerate/zero{2,3}.yaml with --num_processes 2), `accelerate launch … launch/stage1.sh` with
HS_RL_STAGES=stages/tiny, two steps, a resume, and a re-run that only has the export left.

What made these work on CPU (see docs/distributed.md, "DeepSpeed on CPU"):
- DeepSpeed's CPU accelerator (DS_ACCELERATOR=cpu, also auto-detected without CUDA) uses gloo; its
  shared-memory all-reduce op is JIT-built once (C++ only, cached under ~/.cache/torch_extensions).
- ZeRO-3 saves: transformers 5.23 records every candidate weight renaming on a model loaded under ZeRO-3, so
  `save_pretrained` wrote `thinker.model.thinker.audio_tower.…`; hs_rl.grpo.trainer keeps only the used ones.
- The export's rank-0 `from_pretrained` ran inside `zero.Init` (a collective) and hung; hs_rl.train runs it
  with the ZeRO-3 loading hook off.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300  # a run takes ~20-30 s on 2 cores; the first one also JIT-builds DeepSpeed's shm op
_FINALS: dict[str, Path] = {}  # stage -> final model folder of test_deepspeed_cpu_two_processes (packed groups on)


@pytest.fixture(scope="module")
def ds_data(sample_data, tmp_path_factory) -> Path:
    """The sample training records: video, audio and video+audio prompts mixed (ZeRO-3 lock-step matters)."""
    from hs_rl.data.convert import convert_file
    from hs_rl.data.records import write_records

    records = convert_file(sample_data["train_json"], media_root=sample_data["media_root"])
    assert {r.modality for r in records} >= {"video", "audio"}
    path = tmp_path_factory.mktemp("ds_data") / "train.jsonl"
    write_records(records, path)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _thinker(path: Path):
    from hs_rl.grpo.families import family_of_dir

    model, info = family_of_dir(path).thinker_class.from_pretrained(path, output_loading_info=True)
    return model, info


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT_S + 120)
@pytest.mark.parametrize("stage,family", [("zero2", "qwen2_5_omni"), ("zero3", "qwen2_5_omni"),
                                          ("zero3", "qwen3_omni")])  # Qwen3-Omni: MoE thinker + DeepStack
def test_deepspeed_cpu_two_processes(stage, family, ds_data, tmp_path, request):
    pytest.importorskip("deepspeed")
    tiny_model = request.getfixturevalue("tiny_model" if family == "qwen2_5_omni" else "tiny_qwen3_model")
    output = tmp_path / "run"
    command = [sys.executable, "-m", "accelerate.commands.launch",
               "--config_file", f"launch/accelerate/{stage}.yaml", "--num_processes", "2",
               "--main_process_ip", "127.0.0.1", "--main_process_port", str(_free_port()),
               "launch/stage1.sh",  # the stage script as written: accelerate runs its Python part
               "--model_name_or_path", str(tiny_model["full"]), "--dataset", str(ds_data),
               "--output_dir", str(output), "--max_steps", "2", "--report_to", "none",
               "--gradient_checkpointing", "true"]
    env = {**os.environ, "HS_RL_STAGES": "stages/tiny", "DS_ACCELERATOR": "cpu", "CUDA_VISIBLE_DEVICES": "",
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.monotonic()
    try:
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        tail = (error.stderr or b"")[-3000:]
        pytest.fail(f"{stage} on CPU did not finish in {TIMEOUT_S} s:\n{tail!r}")
    elapsed = time.monotonic() - start
    (tmp_path / "launch.log").write_text(result.stdout + result.stderr)
    errors = [line for line in result.stderr.splitlines()
              if any(w in line for w in ("Error", "error:", "what()", "terminate", "Signal", "Abort"))]
    assert result.returncode == 0, f"{stage} failed after {elapsed:.0f} s:\n" + "\n".join(errors[-40:])
    print(f"{stage}: 2 processes, 2 steps, {elapsed:.1f} s")

    final = output / "final"
    assert (final / "hs_rl_export.json").is_file()
    log = result.stdout + result.stderr
    # beta 0.1 (stages/tiny): under ZeRO-2 the reference holds the policy's frozen towers, under ZeRO-3 its own shards
    expected = "shared with the policy, not copied" if stage == "zero2" else "a full copy (ZeRO-3"
    assert log.count(expected) == 2, expected  # one line per process
    if stage == "zero2":  # both engines (the reference's at stage 0, the policy's) kept the tensors shared, unchanged
        kept = re.findall(r"reference model: (\d+) of (\d+) shared frozen tensors still shared", log)
        assert len(kept) == 2 and all(a == b != "0" for a, b in kept), kept
    kl = re.findall(r"'kl': '([^']*)'", log)
    assert kl and kl[0] == "0", kl  # step 1: the reference (shared towers or not) equals the policy it starts from
    if family == "qwen2_5_omni":
        assert log.count("'shared_prefix/packed': '1'") == 2  # both steps ran packed
        _FINALS[stage] = final
    else:  # Qwen3-Omni: packed groups refused (DeepStack), per-row forward
        assert "'shared_prefix/packed': '1'" not in log and "DeepStack" in log
    trained, info = _thinker(final)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    initial, _ = _thinker(tiny_model["full"])
    before, after = initial.state_dict(), trained.state_dict()
    assert set(before) == set(after)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("model.language_model.") for k in changed), "no language-model weight changed"
    # the recipe freezes both encoders: ZeRO must not have moved them
    towers = [k for k in changed if k.startswith(("model.visual.", "model.audio_tower."))]
    assert not towers, towers[:5]

    # Resume: one more step from checkpoint-2 through DeepSpeed's engine (ZeRO shards read with weights_only=True).
    again = list(command)
    again[again.index("--max_steps") + 1] = "3"
    again[again.index("--main_process_port") + 1] = str(_free_port())
    resumed = subprocess.run(again, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    (tmp_path / "resume.log").write_text(resumed.stdout + resumed.stderr)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    import json

    state = json.loads((output / "checkpoint-3" / "trainer_state.json").read_text())
    steps_logged = (resumed.stdout + resumed.stderr).count("'grad_norm':")
    assert state["global_step"] == 3 and steps_logged == 1, f"resumed run logged {steps_logged} steps, not 1"

    # Re-run with the last checkpoint saved and final/ lost: the Trainer prepares the engine and loads the shards
    # (no hand-written load, which found no engine), trains nothing and exports the same weights again.
    exported = _thinker(output / "final")[0].state_dict()
    shutil.rmtree(output / "final")
    again[again.index("--main_process_port") + 1] = str(_free_port())
    rerun = subprocess.run(again, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    (tmp_path / "rerun.log").write_text(rerun.stdout + rerun.stderr)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (rerun.stdout + rerun.stderr).count("'grad_norm':") == 0, "the re-run trained a step"
    again_exported = _thinker(output / "final")[0].state_dict()
    assert all(torch.equal(exported[k], again_exported[k]) for k in exported)

@pytest.mark.slow
@pytest.mark.timeout(2 * TIMEOUT_S + 60)
def test_zero3_packed_groups_equal_plain(tiny_model, ds_data, tmp_path):
    """ZeRO-3, two processes, gradient checkpointing on: two steps with packed groups (hs_rl.grpo.prefix_sharing)
    leave the same weights as two steps with the plain per-row forward (same seed, same rollouts), to 1e-5.
    The packed run is test_deepspeed_cpu_two_processes[zero3]'s when it ran first in this session."""
    pytest.importorskip("deepspeed")
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    finals = {}
    for shared in ("true", "false"):
        if shared == "true" and "zero3" in _FINALS:
            finals[shared] = _thinker(_FINALS["zero3"])[0].state_dict()
            continue
        output = tmp_path / f"shared_{shared}"
        command = [sys.executable, "-m", "accelerate.commands.launch",
                   "--config_file", "launch/accelerate/zero3.yaml", "--num_processes", "2",
                   "--main_process_ip", "127.0.0.1", "--main_process_port", str(_free_port()),
                   "-m", "hs_rl.train", "stages/tiny/stage1_video.yaml",
                   "--model_name_or_path", str(tiny_model["full"]), "--dataset", str(ds_data),
                   "--output_dir", str(output), "--max_steps", "2", "--report_to", "none", "--save_strategy", "no",
                   "--gradient_checkpointing", "true", "--shared_prefix", shared]
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        log = result.stdout + result.stderr
        (tmp_path / f"shared_{shared}.log").write_text(log)
        assert result.returncode == 0, log[-3000:]
        packed_steps = log.count("'shared_prefix/packed': '1'")
        assert packed_steps == (2 if shared == "true" else 0), f"shared_prefix={shared}: {packed_steps} packed steps"
        assert "holds part of a group" not in log and "shared_prefix is off" not in log
        finals[shared] = _thinker(output / "final")[0].state_dict()
    before = _thinker(tiny_model["full"])[0].state_dict()
    packed, plain = finals["true"], finals["false"]
    assert any(not torch.equal(before[k], plain[k]) for k in plain if k.startswith("model.language_model."))
    worst = max((packed[k] - plain[k]).abs().max().item() for k in plain)
    print(f"zero3 packed vs plain after 2 steps: max |dw| = {worst:.2e}")
    assert worst <= 1e-5
