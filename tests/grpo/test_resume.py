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


@pytest.mark.slow
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


@pytest.mark.slow
def test_resume_at_epoch_boundary(tiny_model, video_data, tmp_path):
    # two prompts, one per step: an epoch is 2 steps; checkpoint-2 ends epoch 1 of 2
    args = ("--max_steps", "-1", "--num_train_epochs", "2", "--save_steps", "2")
    reference = tmp_path / "reference"
    run(train_command(tiny_model["full"], video_data["two"], reference, *args))
    assert max(h.get("step", 0) for h in metrics(reference)) == 4
    resumed = tmp_path / "resumed"
    resume_from_copy(reference, 2, train_command(tiny_model["full"], video_data["two"], resumed, *args), resumed)
    assert_same_run(reference, resumed)


@pytest.mark.slow
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
                             save_strategy="steps", save_steps=3, max_steps=4)
    with pytest.raises(ValueError, match="save_steps must be a multiple of 2"):
        check_generation_cycle(config)
    config.save_steps = 4
    check_generation_cycle(config)
    # transformers saves at max_steps whatever save_steps says: it must end a cycle too
    config.max_steps = 3
    with pytest.raises(ValueError, match=r"max_steps must be a multiple of 2 \(e.g. 4\)"):
        check_generation_cycle(config)
    config.save_strategy = "no"  # no checkpoint at all
    check_generation_cycle(config)
    # gradient accumulation counts: 4 micro-steps per step already cover a cycle of 4
    check_generation_cycle(SimpleNamespace(steps_per_generation=4, num_iterations=1, gradient_accumulation_steps=4,
                                           save_strategy="steps", save_steps=1, max_steps=3))
    with pytest.raises(ValueError, match="multiple of 3"):
        check_generation_cycle(SimpleNamespace(steps_per_generation=3, num_iterations=2, gradient_accumulation_steps=2,
                                               save_strategy="steps", save_steps=1, max_steps=-1))


def parse_train(command: list[str]) -> tuple:
    """The (data, config, model) arguments `hs-rl train` would build from a `train_command`."""
    from hs_rl.commands import build_parser

    return build_parser("train").parse_args_and_config(["--config", str(STAGE), *command[4:]])


@pytest.mark.slow
def test_end_of_run_inside_a_generation_cycle(tiny_model, video_data, tmp_path, monkeypatch):
    """max_steps 3 with steps_per_generation 2 is refused before any step; a checkpoint-3 that an earlier version
    wrote there is refused on resume (it crashed the run), naming the aligned checkpoint to resume from."""
    import hs_rl.grpo.checkpoints as checkpoints
    from hs_rl.train import run_train

    cycle = ("--steps_per_generation", "2", "--save_steps", "2")
    out = tmp_path / "run"
    result = subprocess.run(train_command(tiny_model["full"], video_data["all"], out, *cycle, "--max_steps", "3"),
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0 and "max_steps must be a multiple of 2" in result.stderr, result.stderr[-2000:]
    assert not checkpoints.checkpoints(out) and "Loading weights" not in result.stderr

    # what an earlier version left: checkpoint-3, inside the cycle of steps 3-4
    monkeypatch.setattr(checkpoints, "check_generation_cycle", lambda config: None)
    assert run_train(*parse_train(train_command(tiny_model["full"], video_data["all"], out, *cycle,
                                                "--max_steps", "3"))) == 0
    monkeypatch.undo()
    assert [s for s, _ in checkpoints.checkpoints(out)] == [2, 3]
    longer = train_command(tiny_model["full"], video_data["all"], out, *cycle, "--max_steps", "4")
    result = subprocess.run(longer, capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0, result.stderr[-2000:]
    for words in ("checkpoint-3 ends at step 3, inside a generation cycle",
                  f"--resume_from_checkpoint {out / 'checkpoint-2'}", "--resume_from_checkpoint none"):
        assert words in result.stderr, result.stderr[-2000:]
    assert "bookkeeping bug" not in result.stderr and "Loading weights" not in result.stderr
    # the advice works: from checkpoint-2 the longer run trains steps 3 and 4
    run([*longer, "--resume_from_checkpoint", str(out / "checkpoint-2")])
    assert [h["step"] for h in metrics(out) if "loss" in h] == [1, 2, 3, 4]


def test_resume_refuses_a_checkpoint_inside_a_cycle_unless_nothing_is_left(tmp_path):
    from types import SimpleNamespace

    from hs_rl.grpo.checkpoints import check_resume_cycle

    for step in (2, 3):
        _checkpoint(tmp_path, step, True)
    config = SimpleNamespace(steps_per_generation=2, num_iterations=1, gradient_accumulation_steps=1, max_steps=4)
    with pytest.raises(ValueError, match="resume from checkpoint-2"):
        check_resume_cycle(tmp_path / "checkpoint-3", config)
    check_resume_cycle(tmp_path / "checkpoint-2", config)
    config.max_steps = 3  # a re-run that only exports
    check_resume_cycle(tmp_path / "checkpoint-3", config)


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


@pytest.mark.slow
def test_full_disk_during_save_then_resume(tiny_model, video_data, tmp_path, monkeypatch):
    import transformers.modeling_utils as modeling_utils

    from hs_rl.commands import build_parser
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
    with pytest.raises(SystemExit) as failure:
        run_train(*parsed)
    message = str(failure.value.code)
    assert "\n" not in message and f"the disk of {out} is full" in message and "free there" in message, message
    assert "the size of checkpoint-2" in message and "resumes from checkpoint-2" in message, message
    assert (out / "checkpoint-2" / MARKER).is_file()
    assert (out / "checkpoint-4").is_dir() and not (out / "checkpoint-4" / MARKER).exists()
    monkeypatch.undo()
    run(command)
    assert_same_run(reference, out)


@pytest.mark.slow
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


@pytest.fixture(scope="module")
def finished_run(tiny_model, video_data, tmp_path_factory) -> Path:
    """A finished 2-step run of the tiny stage (checkpoint-2, final/); tests copy it before changing it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    run(train_command(tiny_model["full"], video_data["all"], out, "--max_steps", "2", "--save_steps", "2"))
    return out


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


@pytest.mark.slow
def test_extending_a_finished_run_trains_its_first_new_step(tiny_model, video_data, finished_run, tmp_path):
    """max_steps 2 → 3: the linear schedule is rebuilt for 3 steps and continues at step 3's point of it (the
    restored one had reached 0), so step 3 trains at lr × 1/3, as a 3-step run does, and moves the weights."""
    import yaml

    out = copy_of(finished_run, tmp_path)
    run(train_command(tiny_model["full"], video_data["all"], out, "--max_steps", "3", "--save_steps", "2"))
    rates = {h["step"]: h["learning_rate"] for h in metrics(out) if "learning_rate" in h}
    base = float(yaml.safe_load((STAGE.parent / "base.yaml").read_text())["learning_rate"])
    assert rates[3] == pytest.approx(base * (3 - 2) / 3, rel=1e-6), rates
    before, after = (load_file(out / f"checkpoint-{n}" / "model.safetensors") for n in (2, 3))
    assert any(not torch.equal(before[k], after[k]) for k in before), "step 3 left the weights as they were"


@pytest.mark.slow
def test_resume_with_other_settings_is_refused_before_loading(tiny_model, video_data, finished_run, tmp_path):
    """A re-run with changed training settings names each difference and the ways on, and loads nothing."""
    from hs_rl.data.records import load_records, write_records

    out = copy_of(finished_run, tmp_path)
    changed = ("--max_steps", "4", "--learning_rate", "5e-2", "--reward_funcs", "accuracy", "--reward_weights", "1",
               "--beta", "0.0")
    result = subprocess.run(train_command(tiny_model["full"], video_data["all"], out, *changed),
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0
    for words in (f"{out / 'checkpoint-2'} was trained with other settings", "learning_rate: 0.001 → 0.05",
                  'reward_funcs: ["format", "accuracy", "format_partial"] → ["accuracy"]',
                  "reward_weights: [1.0, 1.0, 0.5] → [1.0]", "beta: 0.1 → 0.0",
                  "resume with the checkpoint's settings", "--resume_from_checkpoint none into another --output_dir",
                  "--resume_from_checkpoint none --overwrite_output_dir true"):
        assert words in result.stderr, result.stderr[-3000:]
    assert "max_steps" not in result.stderr.split("other settings")[1].split(")")[0]  # a longer run is allowed
    assert "Loading weights" not in result.stderr and [s for s, _ in _steps(out)] == [2]
    # the same file name with other records
    dataset = tmp_path / "data.jsonl"
    write_records(load_records(video_data["all"])[:-1], dataset)
    result = subprocess.run(train_command(tiny_model["full"], dataset, out, "--max_steps", "4"),
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0 and "dataset: the file's content changed" in result.stderr, result.stderr[-3000:]
    # starting afresh with the new settings, as the message says
    run(train_command(tiny_model["full"], video_data["all"], out, *changed, "--resume_from_checkpoint", "none",
                      "--overwrite_output_dir", "true", "--save_steps", "4"))
    assert [s for s, _ in _steps(out)] == [4] and [h["step"] for h in metrics(out) if "loss" in h] == [1, 2, 3, 4]


def _steps(out: Path):
    from hs_rl.grpo.checkpoints import checkpoints

    return checkpoints(out)


def test_settings_check_units(tmp_path, caplog):
    """Equal settings pass; a changed one is named old → new; a checkpoint saved before settings were recorded
    resumes with a warning that nothing was compared."""
    import logging

    from hs_rl.grpo.checkpoints import MARKER, RESUME_SETTINGS, check_resume_settings

    assert {"learning_rate", "lr_scheduler_type", "warmup_steps", "reward_funcs", "reward_weights", "reward_kwargs",
            "beta", "loss_type", "epsilon", "num_generations", "temperature", "top_p", "max_completion_length",
            "per_device_train_batch_size", "gradient_accumulation_steps", "steps_per_generation",
            "model_name_or_path", "dataset_sha256", "seed"} <= set(RESUME_SETTINGS)
    assert not {"max_steps", "num_train_epochs", "save_steps", "output_dir"} & set(RESUME_SETTINGS)
    folder = _checkpoint(tmp_path, 2, True)
    settings = {"learning_rate": 1e-3, "temperature": 1.0, "reward_kwargs": {"think_length": {"max_words": 8}}}
    (folder / MARKER).write_text(json.dumps({"global_step": 2, "settings": settings}))
    check_resume_settings(folder, dict(settings))
    with pytest.raises(ValueError, match=r"reward_kwargs: .*max_words.* → null; temperature: 1.0 → 0.7\)"):
        check_resume_settings(folder, {**settings, "temperature": 0.7, "reward_kwargs": None})
    (folder / MARKER).write_text(json.dumps({"global_step": 2}))
    with caplog.at_level(logging.WARNING, logger="hs_rl.grpo.checkpoints"):
        check_resume_settings(folder, {**settings, "temperature": 0.7})
    assert "were not compared" in caplog.text


@pytest.mark.slow
def test_completions_log_holds_each_step_once_after_a_resume(tiny_model, video_data, tmp_path):
    """A kill after step 4's completions were logged but before checkpoint-4: the resume from checkpoint-2
    trains steps 3 and 4 again, and the log holds them once, numbered as log_history numbers steps (from 1)."""
    args = ("--max_steps", "4", "--save_steps", "2", "--completions_log", "true")
    reference = tmp_path / "reference"
    run(train_command(tiny_model["full"], video_data["all"], reference, *args))
    rows = [json.loads(line) for line in (reference / "completions.jsonl").read_text().splitlines()]
    assert sorted({r["step"] for r in rows}) == [h["step"] for h in metrics(reference) if "loss" in h] == [1, 2, 3, 4]
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(reference / "checkpoint-2", resumed / "checkpoint-2")
    shutil.copy(reference / "completions.jsonl", resumed / "completions.jsonl")
    with open(resumed / "completions.jsonl", "a") as handle:
        handle.write('{"step": 5, "mode": "train", "id": "cut sho')  # the kill cut the last line short
    run(train_command(tiny_model["full"], video_data["all"], resumed, *args))
    again = [json.loads(line) for line in (resumed / "completions.jsonl").read_text().splitlines()]
    assert [(r["step"], r["id"]) for r in again] == [(r["step"], r["id"]) for r in rows]
    assert again == rows  # an exact resume: the same completions, rewards and advantages


@pytest.mark.slow
def test_ctrl_c_is_one_line_reads_interrupted_and_resumes(tiny_model, video_data, tmp_path):
    from hs_rl.grpo.checkpoints import MARKER
    from hs_rl.status import stage_status

    out = tmp_path / "run"
    # 30 steps: the Ctrl-C comes after checkpoint-2 with steps left to interrupt, even on a loaded machine
    command = train_command(tiny_model["full"], video_data["all"], out, "--max_steps", "30", "--save_steps", "2")
    with open(tmp_path / "stderr.txt", "w") as log:  # a file, not a pipe nobody reads while it runs
        # SIGINT back to its default in the child: a pytest-xdist worker ignores it, and an ignored signal stays
        # ignored across exec (Python then never raises KeyboardInterrupt, and the run trains on to its end)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, cwd=REPO,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 120
        while not (out / "checkpoint-2" / MARKER).exists() and process.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    stderr = (tmp_path / "stderr.txt").read_text()
    assert not (out / "final").exists(), "the run finished before Ctrl-C"
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    said = [line for line in stderr.splitlines() if "interrupted" in line]
    assert len(said) == 1 and "run the same command again to resume from" in said[0], stderr[-3000:]
    status = stage_status("run", out)
    assert status.state == "interrupted", status
    assert any("stopped: interrupted (Ctrl-C)" in line for line in status.details), status.details
    run(command)
    assert [h["step"] for h in metrics(out) if "loss" in h] == list(range(1, 31))
    assert stage_status("run", out).state == "done"


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                            capture_output=True, text=True)
    return result.returncode == 0


@pytest.mark.slow
def test_full_disk_for_real_says_so_in_one_line(tiny_model, video_data, tmp_path):
    """The output folder on a tmpfs with room for one checkpoint: the second save fails in torch's writer
    ("basic_ios::clear: iostream error" and the like); the run ends with one line naming the folder, its free
    space and a checkpoint's size; once there is room the same command resumes from checkpoint-2."""
    from hs_rl.grpo.checkpoints import MARKER

    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "1100k"):
        pytest.skip("cannot mount a tmpfs here (needs root); test_full_disk_during_save_then_resume covers it")
    try:
        args = ("--max_steps", "4", "--save_steps", "2")
        out = disk / "run"
        command = train_command(tiny_model["full"], video_data["all"], out, *args)
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        assert result.returncode == 1, result.stderr[-3000:]
        assert "Traceback" not in result.stderr and "basic_ios" not in result.stderr, result.stderr[-3000:]
        said = [line for line in result.stderr.splitlines() if "is full" in line]
        assert len(said) == 1, result.stderr[-3000:]
        for words in (f"the disk of {out} is full", "free there", "the size of checkpoint-2",
                      "resumes from checkpoint-2"):
            assert words in said[0], said[0]
        assert (out / "checkpoint-2" / MARKER).is_file() and not (out / "checkpoint-4" / MARKER).exists()
        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)
        run(command)
        assert [h["step"] for h in metrics(out) if "loss" in h] == [1, 2, 3, 4]
        assert (out / "checkpoint-4" / MARKER).is_file() and (out / "final").is_dir()
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
