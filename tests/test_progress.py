"""Live progress and `hs-rl status`: a real two-stage tiny pipeline, killed in the middle of stage 2, then resumed.

The console must carry one progress line per stage with step counts and rewards and nothing from the training
processes; `status` must read the run from its files alone: running, interrupted at the right step with the newest
complete checkpoint, failed, done, and a clear message for a folder that holds no run.
"""
from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
STALL = f"{REPO / 'tests' / 'stalling_reward.py'}:zero_or_stall"
# a pipeline's own console lines: its stage announcements, or a progress line
PROGRESS = re.compile(r"^(stage1_video|stage2_audio)  step (\d+)/(\d+)  ▕[█░]{10}▏ +\d+ %(  reward -?[\d.e-]+  .*)?$")


def status_text(capsys, folder: Path, **kwargs) -> tuple[int, str]:
    from hs_rl.status import StatusArguments, run_status

    capsys.readouterr()
    code = run_status(StatusArguments(output_dir=str(folder), **kwargs))
    return code, capsys.readouterr().out


def stage_line(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(name))


def wait_for(condition, timeout: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the pipeline exited ({process.returncode}) before {what}")
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def pipeline_yaml(tiny_model, sample_data, tmp_path_factory) -> Path:
    """Two tiny stages (video, then audio) whose stage 2 has a reward that can stall on demand."""
    from hs_rl.data.convert import convert_file
    from hs_rl.data.records import write_records

    folder = tmp_path_factory.mktemp("progress_pipeline")
    records = convert_file(sample_data["train_json"], media_root=sample_data["media_root"])
    for modality in ("video", "audio"):
        write_records([r for r in records if r.modality == modality], folder / f"{modality}.jsonl")
    spec = {"output_dir": str(folder / "run"), "model_name_or_path": str(tiny_model["full"]), "stages": [
        {"name": "stage1_video", "config": str(REPO / "stages" / "tiny" / "stage1_video.yaml"),
         "dataset": str(folder / "video.jsonl"), "options": {"max_steps": 1}},
        {"name": "stage2_audio", "config": str(REPO / "stages" / "tiny" / "stage2_audio.yaml"),
         "dataset": str(folder / "audio.jsonl"),
         "options": {"max_steps": 4, "reward_funcs": ["format", "accuracy", STALL]}},
    ]}
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    return folder / "pipeline.yaml"


@pytest.mark.slow
def test_killed_in_stage2_then_resumed(pipeline_yaml, capsys):
    """Run until stage 2 stalls at step 3, ask status, kill -9 everything, ask again, resume, ask again."""
    from hs_rl.pipeline import PipelineArguments, run_pipeline

    run = pipeline_yaml.parent / "run"
    stage2 = run / "stage2_audio"
    env = {**os.environ, "HS_RL_TEST_STALL_AT_CALL": "3", "PYTHONPATH": str(REPO)}
    console = pipeline_yaml.parent / "console.txt"
    with open(console, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "hs_rl.cli", "pipeline", str(pipeline_yaml), "--progress_interval", "0",
             "--override", "save_steps=2", "report_to=none"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)
    try:
        def stalled_after_step2() -> bool:
            record = json.loads((stage2 / "progress.json").read_text()) if (stage2 / "progress.json").is_file() \
                else {}
            return record.get("step") == 2 and (stage2 / "checkpoint-2" / "hs_rl_complete.json").is_file()

        wait_for(stalled_after_step2, 300, "stage 2 to reach step 2", process)
        time.sleep(1.5)  # step 3's generation is under way and stalls in the reward
        code, text = status_text(capsys, run)
        assert code == 0
        assert stage_line(text, "stage1_video").split()[1] == "done"
        line = stage_line(text, "stage2_audio")
        assert line.split()[1] == "running" and "step 2/4" in line and "reward" in line and "ETA" in line, text
        assert f"host {socket.gethostname()}" in text and "checkpoint-2" in text
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the pipeline and its stage: one process group
        process.wait()
    from hs_rl.progress import pid_running

    trainer_pid = json.loads((stage2 / "progress.json").read_text())["pid"]
    wait_for(lambda: not pid_running(trainer_pid), 30, "the killed stage process to end")

    code, text = status_text(capsys, run)
    line = stage_line(text, "stage2_audio")
    assert line.split()[1] == "interrupted" and "step 2/4" in line and "ETA" not in line, text
    assert f"newest complete checkpoint: {stage2 / 'checkpoint-2'}" in text
    assert "resumes from checkpoint-2" in text
    assert "final: exported and verified" in text  # stage 1's
    # one stage's folder works too
    code, text = status_text(capsys, stage2)
    assert text.splitlines()[1].startswith("stage2_audio") and "interrupted" in text

    # the console: the pipeline's own lines and progress lines, nothing from the training processes
    lines = [line for line in console.read_text().splitlines() if line.strip()]
    progress = [PROGRESS.match(line) for line in lines]
    others = [line for line, match in zip(lines, progress) if match is None]
    assert all(line.startswith(("[stage1_video] ", "[stage2_audio] ")) for line in others), others
    seen = {(m.group(1), int(m.group(2)), int(m.group(3))) for m in progress if m}
    assert {("stage1_video", 1, 1), ("stage2_audio", 2, 4)} <= seen  # the last step of each (stage 2 stalls at 3)
    assert all(m.group(4) for m in progress if m and int(m.group(2)) > 0)  # rewards from the first step on
    assert "Traceback" not in console.read_text() and "it/s" not in console.read_text()

    # the same command resumes stage 2 from checkpoint-2 and finishes; stage 1 is skipped
    capsys.readouterr()
    assert run_pipeline(PipelineArguments(pipeline=str(pipeline_yaml), progress_interval=0,
                                          override=["save_steps=2", "report_to=none"])) == 0
    out = capsys.readouterr().out
    assert "[stage1_video] done, skipped" in out
    assert re.search(r"^stage2_audio  step 4/4  ▕██████████▏ 100 %  reward .* s/step$", out, re.M), out
    assert not re.search(r"^stage2_audio  step [01]/4", out, re.M)  # resumed, not restarted
    (stage2 / "report").mkdir()
    (stage2 / "report" / "curves.png").write_bytes(b"\x89PNG")  # what `hs-rl plot` leaves
    code, text = status_text(capsys, run)
    for name in ("stage1_video", "stage2_audio"):
        assert stage_line(text, name).split()[1] == "done", text
    assert "step 4/4" in stage_line(text, "stage2_audio") and "reward" in stage_line(text, "stage2_audio")
    assert text.count("final: exported and verified") == 2
    assert f"newest complete checkpoint: {stage2 / 'checkpoint-4'}" in text
    assert f"curves: {stage2 / 'report' / 'curves.png'}" in text


def test_failed_stage_shows_its_log(tmp_path, tiny_model, pipeline_yaml, capsys):
    """A stage that exits non-zero: the console shows its log's last lines and path; status says failed. (A reward
    that raises at its first call: what the pipeline's checks before stage 1 cannot see.)"""
    from hs_rl.pipeline import PipelineArguments, run_pipeline

    (tmp_path / "boom.py").write_text("def boom(completions, **kwargs):\n    raise RuntimeError('boom at run time')\n")
    spec = {"output_dir": str(tmp_path / "run"), "model_name_or_path": str(tiny_model["full"]), "stages": [
        {"name": "stage1_video", "config": str(REPO / "stages" / "tiny" / "stage1_video.yaml"),
         "dataset": str(pipeline_yaml.parent / "video.jsonl"),
         "options": {"max_steps": 1, "report_to": "none", "reward_funcs": ["format", "accuracy",
                                                                          f"{tmp_path / 'boom.py'}:boom"]}},
        {"name": "stage2_audio", "config": str(REPO / "stages" / "tiny" / "stage2_audio.yaml")}]}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    assert run_pipeline(PipelineArguments(pipeline=str(tmp_path / "pipeline.yaml"), only="stage1_video")) == 1
    out = capsys.readouterr().out
    log = tmp_path / "run" / "stage1_video" / "train.log"
    assert f"[stage1_video] failed (exit 1); last lines of {log}:" in out
    assert "boom at run time" in out and f"full log: {log}" in out
    code, text = status_text(capsys, tmp_path / "run")
    assert stage_line(text, "stage1_video").split()[1] == "failed", text
    assert "failed: exit 1" in text and "boom at run time" in text and f"log: {log}" in text
    assert stage_line(text, "stage2_audio").split()[1:] == ["not", "started"]


def test_status_of_a_folder_without_a_run(tmp_path, capsys):
    code, text = status_text(capsys, tmp_path)
    assert code == 1 and f"no run in {tmp_path}" in text and "output_dir" in text
    code, text = status_text(capsys, tmp_path / "nowhere")
    assert code == 1 and "does not exist" in text
    from hs_rl.cli import main

    assert main(["status", str(tmp_path), "--interval", "1"]) == 1  # the command line: positional folder
    assert f"no run in {tmp_path}" in capsys.readouterr().out


def test_liveness_without_a_process_table():
    """Same host: the pid decides at once; another host: the heartbeat's age."""
    from hs_rl.progress import is_alive

    now = time.time()
    here = {"host": socket.gethostname(), "pid": os.getpid(), "updated": now - 5, "heartbeat_s": 30}
    assert is_alive(here, now=now)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not is_alive({**here, "pid": dead.pid}, now=now)
    elsewhere = {**here, "host": "another-node", "pid": 1}
    assert is_alive(elsewhere, now=now)
    assert not is_alive({**elsewhere, "updated": now - 121}, now=now)
    assert is_alive({**elsewhere, "updated": now - 121}, stale_after=300, now=now)


def test_terminal_gets_a_live_bar(tmp_path):
    """On a terminal the same information is one tqdm line redrawn in place."""
    from hs_rl.progress import StageConsole, write_json_atomic

    class Terminal(io.StringIO):
        encoding = "utf-8"

        def isatty(self) -> bool:
            return True

    screen = Terminal()
    console = StageConsole("stage2_audio", tmp_path, stream=screen)
    record = {"host": "h", "pid": 1, "started": 1.0, "step": 120, "max_steps": 400, "step_time_s": 2.1,
              "metrics": {"reward": 0.61, "rewards/accuracy_reward/mean": 0.55,
                          "rewards/format_reward/mean": 0.98, "kl": 0.012}}
    write_json_atomic(tmp_path / "progress.json", record)
    console.poll()
    write_json_atomic(tmp_path / "progress.json", {**record, "step": 121})
    console.close()
    frames = [f.strip() for f in re.split(r"[\r\n]", screen.getvalue()) if f.strip()]
    assert frames[0] == ("stage2_audio  step 120/400  ▕███░░░░░░░▏ 30 %  reward 0.61  acc 0.55  fmt 0.98  "
                         "kl 0.012  2.1 s/step  ETA 9m48s")
    assert frames[-1].startswith("stage2_audio  step 121/400  ▕███░░░░░░░▏ 30 %")


def test_recorder_writes_rank0_record(tmp_path):
    """The callback's record through a run's events, as transformers calls them, and an exit mid-training."""
    from transformers import TrainerControl, TrainerState

    from hs_rl.grpo.progress_recorder import ProgressRecorder
    from hs_rl.progress import read_progress

    recorder = ProgressRecorder(tmp_path / "stage", heartbeat_s=0.05)
    state, control = TrainerState(max_steps=4, global_step=2), TrainerControl()  # resumed at step 2
    other = TrainerState(max_steps=4, global_step=2, is_world_process_zero=False)
    ProgressRecorder(tmp_path / "other").on_train_begin(None, other, control)
    assert not (tmp_path / "other").exists()  # ranks other than 0 write nothing
    recorder.on_train_begin(None, state, control)
    try:
        record = read_progress(tmp_path / "stage")
        assert (record["state"], record["step"], record["start_step"], record["max_steps"]) == ("training", 2, 2, 4)
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        time.sleep(0.3)
        assert read_progress(tmp_path / "stage")["updated"] > record["updated"]  # the heartbeat
        state.global_step = 3
        recorder.on_step_end(None, state, control)
        recorder.on_log(None, state, control, logs={"reward": 0.5, "rewards/format_reward/mean": 1.0, "kl": 0.01})
        record = read_progress(tmp_path / "stage")
        assert record["step"] == 3 and record["metrics"]["reward"] == 0.5 and record["step_time_s"] >= 0.3
        recorder._at_exit()  # what atexit runs when the process ends before on_train_end
        assert read_progress(tmp_path / "stage")["state"] == "failed"
    finally:
        import atexit

        recorder._stop.set()
        atexit.unregister(recorder._at_exit)
