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

import contextlib
import json
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
    from hs_rl.omni.families import family_of_dir

    family = family_of_dir(path)
    model, info = family.thinker_class.from_pretrained(path, output_loading_info=True)
    # a full Omni folder's other models, which transformers 5.20 lists as unexpected when the thinker loads from it
    info["unexpected_keys"] = {k for k in info["unexpected_keys"] if not k.startswith(family.non_thinker_prefixes())}
    return model, info


def _prefix(path: Path, part: str) -> str:
    """The state-dict name prefix of a thinker part ("language_model", "vision", "audio") on the installed layout
    (5.23: model.language_model., model.visual., ...; 5.20: model., visual., ...)."""
    from hs_rl.omni.vllm_engine import _CHECKPOINT_PARTS, thinker_parts

    parts = thinker_parts(_thinker(path)[0])
    return next(memory for memory, checkpoint in parts.items() if checkpoint == _CHECKPOINT_PARTS[part])


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
        # a copy: the resume below trains a third step and exports into final/ again
        _FINALS[stage] = shutil.copytree(final, tmp_path / "final_step2")
    else:  # Qwen3-Omni: packed groups refused (DeepStack), per-row forward
        assert "'shared_prefix/packed': '1'" not in log and "DeepStack" in log
    trained, info = _thinker(final)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    initial, _ = _thinker(tiny_model["full"])
    before, after = initial.state_dict(), trained.state_dict()
    assert set(before) == set(after)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    language, vision, audio = (_prefix(final, part) for part in ("language_model", "vision", "audio"))
    assert any(k.startswith(language) for k in changed), "no language-model weight changed"
    # the recipe freezes both encoders: ZeRO must not have moved them
    towers = [k for k in changed if k.startswith((vision, audio))]
    assert not towers, towers[:5]

    # Resume: one more step from checkpoint-2 through DeepSpeed's engine (ZeRO shards read with weights_only=True).
    again = list(command)
    again[again.index("--max_steps") + 1] = "3"
    again[again.index("--main_process_port") + 1] = str(_free_port())
    resumed = subprocess.run(again, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    (tmp_path / "resume.log").write_text(resumed.stdout + resumed.stderr)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

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
    language = _prefix(tiny_model["full"], "language_model")
    assert any(not torch.equal(before[k], plain[k]) for k in plain if k.startswith(language))
    worst = max((packed[k] - plain[k]).abs().max().item() for k in plain)
    print(f"zero3 packed vs plain after 2 steps: max |dw| = {worst:.2e}")
    assert worst <= 1e-5


# A reward that scores nothing; its first call (step 1, long after every process validated the data) cuts one wav to
# its header, so that clip breaks at run time: the steps after it read it broken. Process 0 alone writes the file; the
# others cannot read it before their next step, which starts after a collective process 0 joins after this call.
BREAKING_REWARD = '''
import os

def zero(prompts, completions, **kwargs):
    path = os.environ["HS_BREAK_WAV"]
    if os.environ.get("RANK", "0") == "0" and os.path.getsize(path) > 44:
        with open(path, "rb") as handle:
            header = handle.read(44)
        with open(path, "wb") as handle:  # the RIFF header alone: no samples left
            handle.write(header)
    return [0.0] * len(completions)
'''

# what a process logs when another process's micro-batch overrules its own packing decision (hs_rl.grpo.trainer)
_OVERRULED = "another process's micro-batch holds part of a group"
LOCKSTEP_STEPS = 8  # with seed 42 the two processes' group layouts differ in some step (asserted below)


def _launch(command: list[str], env: dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    """Run an `accelerate launch`; past `timeout` it and every process under it are killed (torch's launcher
    starts each worker in a session of its own: a hung worker would outlive the launcher) and the test fails with
    the log's tail."""
    import psutil

    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for child in [*psutil.Process(process.pid).children(recursive=True), psutil.Process(process.pid)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"no result in {timeout} s (a process waits for another that never comes): "
                    f"{(stdout + stderr)[-3000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def lockstep_data(sample_data, tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """Eight records: video, audio and video+audio mixed, one audio record on a wav of its own (broken at run time,
    followed by a video-only record, the one the dataset's fallback would take instead). Returns (records JSONL,
    that wav, modality by record id)."""
    import dataclasses

    from hs_rl.data.convert import convert_file
    from hs_rl.data.records import write_records

    folder = tmp_path_factory.mktemp("lockstep_data")
    records = convert_file(sample_data["train_json"], media_root=sample_data["media_root"])
    by_modality = {m: [r for r in records if r.modality == m] for m in ("audio", "video", "video_audio")}
    wav = folder / "breaks_at_run_time.wav"
    shutil.copyfile(by_modality["audio"][0].audio, folder / "intact.wav")
    shutil.copyfile(by_modality["audio"][0].audio, wav)
    broken = dataclasses.replace(by_modality["audio"][0], id="breaks-at-run-time", audio=str(wav))
    chosen = [by_modality["video_audio"][0], by_modality["audio"][1], broken, by_modality["video"][0],
              by_modality["video_audio"][1], by_modality["video"][1], by_modality["video_audio"][2],
              by_modality["video"][2]]
    path = folder / "train.jsonl"
    write_records(chosen, path)
    return path, wav, {r.id: r.modality for r in chosen}


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT_S + 120)
@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_ranks_stay_in_lockstep(stage, tiny_model, lockstep_data, tmp_path):
    """Every process runs the same modules the same number of times, whatever its own micro-batches hold.

    Two processes, stage 3's tiny YAML, 8 steps of 2 micro-batches each (`steps_per_generation 2`: TRL shuffles
    each process's generation batch with its own RNG, so one process's micro-batch holds whole groups and packs
    while the other's splits a group), mixed modalities (at some step one process has no audio while the other
    has), a trainable audio tower (its gradient buckets must match on every process) and a wav cut to its header
    after validation. Before the fix ZeRO-3 hung (packed path: two embedding calls, plain path: one) and ZeRO-2
    crashed in gloo ("Received data size doesn't match expected size": the audio tower ran on one process only).
    """
    pytest.importorskip("deepspeed")
    dataset, wav, modality = lockstep_data
    shutil.copyfile(wav.with_name("intact.wav"), wav)  # whole again: the other stage's run cut it
    reward = tmp_path / "breaking_reward.py"
    reward.write_text(BREAKING_REWARD)
    output = tmp_path / "run"
    command = [sys.executable, "-m", "accelerate.commands.launch",
               "--config_file", f"launch/accelerate/{stage}.yaml", "--num_processes", "2",
               "--main_process_ip", "127.0.0.1", "--main_process_port", str(_free_port()),
               "-m", "hs_rl.train", "stages/tiny/stage3_video_audio.yaml",
               "--model_name_or_path", str(tiny_model["full"]), "--dataset", str(dataset),
               "--output_dir", str(output), "--max_steps", str(LOCKSTEP_STEPS), "--report_to", "none",
               "--save_strategy", "no", "--per_device_train_batch_size", "2", "--num_generations", "2",
               "--steps_per_generation", "2", "--gradient_accumulation_steps", "2", "--freeze_audio_encoder", "false",
               "--gradient_checkpointing", "true",
               "--reward_funcs", "format", "accuracy", f"{reward}:zero", "--reward_weights", "1", "1", "0"]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "HS_BREAK_WAV": str(wav)}
    result = _launch(command, env, TIMEOUT_S)
    log = result.stdout + result.stderr
    (tmp_path / "launch.log").write_text(log)
    assert result.returncode == 0, log[-4000:]
    assert log.count("'grad_norm':") == LOCKSTEP_STEPS, "not every optimizer step ran"
    assert wav.stat().st_size == 44, "the wav was not cut after validation"
    why = "ZeRO-3" if stage == "zero3" else "trained audio tower"  # run_all_towers turned itself on, on both
    assert len(re.findall(rf"run_all_towers: both towers run in every forward on every process \(.*{why}", log)) == 2

    # what the run went through: group layouts that differ between processes ...
    assert _OVERRULED in log, "no micro-batch packed on one process only: the case was not exercised"
    # ... a generation batch with audio on one process and none on the other (completions.jsonl lists process
    # 0's rows, then process 1's) ...
    steps: dict[int, list[str]] = {}  # record ids of each generation batch
    for line in (output / "completions.jsonl").read_text().splitlines():
        row = json.loads(line)
        steps.setdefault(row["step"], []).append(row["id"])
    assert len(steps) == LOCKSTEP_STEPS and all(len(ids) == 8 for ids in steps.values()), steps
    audio = [[any(modality[i] != "video" for i in ids[:4]), any(modality[i] != "video" for i in ids[4:])]
             for ids in steps.values()]
    assert any(a != b for a, b in audio), f"every step gave both processes audio, or neither: {steps}"
    # ... and the broken clip, read after step 1 cut it: replaced and counted (hs_rl.data.dataset), or, where the
    # data code let it through, trained on as it is
    replaced = [float(v) for v in re.findall(r"'media/replaced_samples': '([^']*)'", log)]
    read_broken = any("breaks-at-run-time" in ids for step, ids in steps.items() if step != min(steps))
    assert sum(replaced[1:]) > 0 or read_broken, "the broken clip was never read after it broke"

    # the trainable audio tower trained, the frozen vision tower did not, the language model did
    before = _thinker(tiny_model["full"])[0].state_dict()
    after = _thinker(output / "final")[0].state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    language, vision, audio = (_prefix(output / "final", part) for part in ("language_model", "vision", "audio"))
    assert any(k.startswith(audio) for k in changed), "the audio tower did not train"
    assert any(k.startswith(language) for k in changed)
    assert not any(k.startswith(vision) for k in changed)
