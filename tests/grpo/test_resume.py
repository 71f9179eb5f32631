"""Resume that loses nothing: SIGKILL, an epoch boundary, steps_per_generation > 1, half checkpoints, full disk.

Each case compares the final weights and the logged metrics with an uninterrupted run of the same seed.
Interruptions at a checkpoint are reproduced by resuming a fresh output folder from a copy of the reference
run's checkpoint (what is on disk after a kill is exactly that checkpoint); one case kills a real process.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
STAGE = REPO / "stages" / "tiny" / "stage1_video.yaml"
# timings, and HF's end-of-run `train_loss`, which averages only the steps run by the last process
VOLATILE = ("runtime", "per_second", "step_time", "total_flos", "train_loss")


@pytest.fixture(scope="module")
def video_data(sample_data, tmp_path_factory) -> dict[str, Path]:
    """The stage-1 (video) records, all of them and the first two (a 2-step epoch)."""
    from hs_rl.data.convert import convert_file
    from hs_rl.data.records import write_records

    folder = tmp_path_factory.mktemp("resume_data")
    records = [r for r in convert_file(sample_data["train_json"], media_root=sample_data["media_root"])
               if r.modality == "video"]
    write_records(records, folder / "all.jsonl")
    write_records(records[:2], folder / "two.jsonl")
    return {"all": folder / "all.jsonl", "two": folder / "two.jsonl"}


def train_command(model: Path, dataset: Path, out: Path, *extra: str) -> list[str]:
    """`hs-rl train` on the tiny stage, as a process (a real kill needs one)."""
    return [sys.executable, "-m", "hs_rl.train", str(STAGE), "--model_name_or_path", str(model),
            "--dataset", str(dataset), "--output_dir", str(out), "--completions_log", "false",
            "--report_to", "none", *extra]


def run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def metrics(out: Path) -> list[dict]:
    """Logged metrics without timings."""
    history = json.loads((out / "log_history.json").read_text())
    return [{k: v for k, v in h.items() if not any(s in k for s in VOLATILE)} for h in history]


def assert_same_run(a: Path, b: Path) -> None:
    wa, wb = load_file(a / "final" / "model.safetensors"), load_file(b / "final" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-6, msg=key)
    ma, mb = metrics(a), metrics(b)
    assert len(ma) == len(mb)
    for x, y in zip(ma, mb):
        assert x.keys() == y.keys()
        for key in x:
            assert x[key] == pytest.approx(y[key], rel=1e-4, abs=1e-6), (x.get("step"), key)


def resume_from_copy(reference: Path, step: int, command: list[str], out: Path) -> None:
    """The state a kill right after checkpoint `step` leaves, then the same command again."""
    out.mkdir(parents=True)
    shutil.copytree(reference / f"checkpoint-{step}", out / f"checkpoint-{step}")
    run(command)


def test_sigkill_after_second_checkpoint_resumes_exactly(omni_model, video_data, tmp_path):
    """Each family (Qwen3-Omni: MoE thinker, DeepStack): kill -9 after checkpoint 4, run again, same weights."""
    from hs_rl.grpo.checkpoints import MARKER

    tiny_model = omni_model

    args = ("--max_steps", "6", "--save_steps", "2")
    reference = tmp_path / "reference"
    run(train_command(tiny_model["full"], video_data["all"], reference, *args))
    killed = tmp_path / "killed"
    command = train_command(tiny_model["full"], video_data["all"], killed, *args)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    deadline = time.time() + 120
    while not (killed / "checkpoint-4" / MARKER).exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "final").exists(), "the run finished before it could be killed"
    run(command)
    assert_same_run(reference, killed)


def test_resume_at_epoch_boundary(tiny_model, video_data, tmp_path):
    # two prompts, one per step: an epoch is 2 steps; checkpoint-2 ends epoch 1 of 2
    args = ("--max_steps", "-1", "--num_train_epochs", "2", "--save_steps", "2")
    reference = tmp_path / "reference"
    run(train_command(tiny_model["full"], video_data["two"], reference, *args))
    assert max(h.get("step", 0) for h in metrics(reference)) == 4
    resumed = tmp_path / "resumed"
    resume_from_copy(reference, 2, train_command(tiny_model["full"], video_data["two"], resumed, *args), resumed)
    assert_same_run(reference, resumed)


def test_resume_with_steps_per_generation(tiny_model, video_data, tmp_path):
    # one generation serves 2 optimizer steps; checkpoints fall on cycle boundaries (enforced)
    args = ("--max_steps", "4", "--save_steps", "2", "--steps_per_generation", "2")
    reference = tmp_path / "reference"
    run(train_command(tiny_model["full"], video_data["all"], reference, *args))
    resumed = tmp_path / "resumed"
    resume_from_copy(reference, 2, train_command(tiny_model["full"], video_data["all"], resumed, *args), resumed)
    assert_same_run(reference, resumed)


def test_checkpoint_inside_a_generation_cycle_is_a_config_error():
    from types import SimpleNamespace

    from hs_rl.grpo.checkpoints import check_generation_cycle

    config = SimpleNamespace(steps_per_generation=2, num_iterations=1, gradient_accumulation_steps=1,
                             save_strategy="steps", save_steps=3)
    with pytest.raises(ValueError, match="multiple of 2"):
        check_generation_cycle(config)
    config.save_steps = 4
    check_generation_cycle(config)
    # gradient accumulation counts: 4 micro-steps per step already cover a cycle of 4
    check_generation_cycle(SimpleNamespace(steps_per_generation=4, num_iterations=1, gradient_accumulation_steps=4,
                                           save_strategy="steps", save_steps=1))
    with pytest.raises(ValueError, match="multiple of 3"):
        check_generation_cycle(SimpleNamespace(steps_per_generation=3, num_iterations=2, gradient_accumulation_steps=2,
                                               save_strategy="steps", save_steps=1))


def _checkpoint(folder: Path, step: int, complete: bool) -> Path:
    from hs_rl.grpo.checkpoints import MARKER

    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"x")
    if complete:
        (path / MARKER).write_text("{}")
    return path


def test_auto_skips_half_checkpoints_and_rotation_keeps_newest_complete(tmp_path):
    from hs_rl.grpo.checkpoints import discard_incomplete, newest_complete_checkpoint, resolve_resume, rotate

    assert resolve_resume("auto", tmp_path / "nothing") is None
    for step, complete in ((2, True), (4, True), (6, False)):
        _checkpoint(tmp_path, step, complete)
    assert resolve_resume("auto", tmp_path) == str(tmp_path / "checkpoint-4")
    assert resolve_resume(None, tmp_path) is None
    assert discard_incomplete(tmp_path) == [tmp_path / "checkpoint-6"]
    # a kill between a save and its marker: the Trainer's rotation would already have deleted checkpoint-4
    _checkpoint(tmp_path, 6, False)
    rotate(tmp_path, 1)
    assert newest_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-4"
    assert not (tmp_path / "checkpoint-2").exists() and (tmp_path / "checkpoint-6").exists()


def test_full_disk_during_save_then_resume(tiny_model, video_data, tmp_path, monkeypatch):
    import transformers.modeling_utils as modeling_utils

    from hs_rl.cli import build_parser
    from hs_rl.grpo.checkpoints import MARKER
    from hs_rl.train import run_train

    args = ("--max_steps", "4", "--save_steps", "2")
    reference = tmp_path / "reference"
    run(train_command(tiny_model["full"], video_data["all"], reference, *args))

    out = tmp_path / "full_disk"
    command = train_command(tiny_model["full"], video_data["all"], out, *args)
    real_save, calls = modeling_utils.safe_save_file, []

    def save_until_disk_is_full(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(*a, **k)

    monkeypatch.setattr(modeling_utils, "safe_save_file", save_until_disk_is_full)
    parsed = build_parser("train").parse_args_and_config(["--config", str(STAGE), *command[4:]])
    with pytest.raises(OSError) as failure:
        run_train(*parsed)
    assert failure.value.errno == errno.ENOSPC
    assert (out / "checkpoint-2" / MARKER).is_file()
    assert (out / "checkpoint-4").is_dir() and not (out / "checkpoint-4" / MARKER).exists()
    monkeypatch.undo()
    run(command)
    assert_same_run(reference, out)


def test_more_epochs_on_resume_are_trained(tiny_model, video_data, tmp_path):
    """A finished 1-epoch run re-run with num_train_epochs 2 trains epoch 2, exactly as a 2-epoch run does."""
    common = ("--max_steps", "-1", "--save_steps", "2", "--lr_scheduler_type", "constant")
    reference = tmp_path / "reference"
    run(train_command(tiny_model["full"], video_data["two"], reference, *common, "--num_train_epochs", "2"))
    grown = tmp_path / "grown"
    run(train_command(tiny_model["full"], video_data["two"], grown, *common, "--num_train_epochs", "1"))
    assert [h["step"] for h in metrics(grown) if "loss" in h] == [1, 2]
    run(train_command(tiny_model["full"], video_data["two"], grown, *common, "--num_train_epochs", "2"))
    assert [h["step"] for h in metrics(grown) if "loss" in h] == [1, 2, 3, 4]
    assert_same_run(reference, grown)


def test_fresh_run_over_another_runs_checkpoints_is_refused(tiny_model, video_data, tmp_path):
    from hs_rl.grpo.checkpoints import refuse_foreign_checkpoints

    out = tmp_path / "run"
    for step in (50, 100):
        _checkpoint(out, step, True)
    _checkpoint(out, 150, False)
    command = train_command(tiny_model["full"], video_data["all"], out, "--resume_from_checkpoint", "none")
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0
    message = result.stderr[-3000:]
    for words in ("checkpoint-50, checkpoint-100", "--resume_from_checkpoint auto", "another --output_dir",
                  "--overwrite_output_dir true"):
        assert words in message, message
    assert not (out / "checkpoint-2").exists()
    # the explicit overwrite names them for deletion; a resume (or an empty folder) refuses nothing
    assert refuse_foreign_checkpoints(out, None, True) == [out / "checkpoint-50", out / "checkpoint-100"]
    assert refuse_foreign_checkpoints(out, str(out / "checkpoint-100"), False) == []
    assert refuse_foreign_checkpoints(tmp_path / "empty", None, False) == []


def test_rotation_never_deletes_the_checkpoint_just_marked(tmp_path):
    from hs_rl.grpo.checkpoints import rotate

    for step in (50, 100):
        _checkpoint(tmp_path, step, True)
    saved = _checkpoint(tmp_path, 2, True)
    removed = rotate(tmp_path, 2, saved=saved)
    assert saved.is_dir() and removed == [tmp_path / "checkpoint-50"]


def test_load_best_model_at_end_loads_the_best_checkpoint(tiny_model, sample_data, tmp_path):
    """The hook `load_best_model_at_end` calls puts the best checkpoint's weights in the model (HF's own raw load
    matched none of the thinker's saved names and loaded nothing)."""
    import torch
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    from hs_rl.train import build_trainer
    from tests.grpo.trainer_helpers import sample_records, stage_args

    records = [r for r in sample_records(sample_data) if r.modality == "video"]
    trainer = build_trainer(*stage_args(tiny_model["full"], records, tmp_path, max_steps=2, save_strategy="steps",
                                        save_steps=1))
    trainer.train()
    best = tmp_path / "checkpoint-1"
    expected = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(best).state_dict()
    current = trainer.model.state_dict()
    assert any(not torch.equal(current[k], expected[k]) for k in expected)  # step 2 moved away from step 1
    trainer.state.best_model_checkpoint = str(best)
    trainer._load_best_model()
    loaded = trainer.model.state_dict()
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
