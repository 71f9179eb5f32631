"""What a stage says at its start and leaves beside its run: its records by modality (and a warning, or an error,
when they are not what the stage trains), OUTPUT_DIR/train.log with the pipeline's live line when run directly,
no known-harmless dependency warnings, and a model card that says what was trained."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "stages" / "tiny" / "stage1_video.yaml"


@pytest.fixture(scope="module")
def by_modality(sample_data, tmp_path_factory) -> dict[str, Path]:
    from hs_rl.data.convert import convert_file
    from hs_rl.data.records import write_records

    folder = tmp_path_factory.mktemp("by_modality")
    records = convert_file(sample_data["train_json"], media_root=sample_data["media_root"])
    paths = {}
    for modality in ("video", "audio", "video_audio"):
        paths[modality] = folder / f"{modality}.jsonl"
        write_records([r for r in records if r.modality == modality], paths[modality])
    return paths


def _args(tiny_model, dataset: Path, output_dir: Path, *extra: str):
    from hs_rl.commands import parse_command

    return parse_command("train", [str(TINY), "--model_name_or_path", str(tiny_model["full"]), "--dataset",
                                   str(dataset), "--output_dir", str(output_dir), *extra])


def test_a_stage_counts_its_records_by_modality_and_warns_when_they_are_not_its_own(tiny_model, by_modality,
                                                                                      tmp_path, caplog):
    from hs_rl.errors import UserError
    from hs_rl.preflight import check_stage

    caplog.set_level(logging.INFO, logger="hs_rl")
    # stages/tiny/stage1_video.yaml says expect_modalities: [video]; 25 video_audio records
    check = check_stage(*_args(tiny_model, by_modality["video_audio"], tmp_path / "stage1_video"))
    assert check.counts == {"video_audio": 25}
    assert f"{by_modality['video_audio']}: 25 records (video_audio 25)" in caplog.text
    assert (f"dataset {by_modality['video_audio']}: 25 video_audio record(s) of 25, but expect_modalities ['video'] "
            "says this stage trains video") in caplog.text
    caplog.clear()
    assert not check_stage(*_args(tiny_model, by_modality["video"], tmp_path / "stage1_video")).warnings
    assert "13 records (video 13)" in caplog.text
    # the strict option makes it an error before anything loads
    with pytest.raises(UserError, match=r"25 video_audio record\(s\) of 25.*\(modality_mismatch: error\)"):
        check_stage(*_args(tiny_model, by_modality["video_audio"], tmp_path / "s", "--modality_mismatch", "error"))
    # without expect_modalities the stage's name says what it trains
    from hs_rl.preflight import stage_problems

    data, config, model = _args(tiny_model, by_modality["audio"], tmp_path / "stage3_video_audio")
    data.expect_modalities = None
    assert stage_problems(data, config, model).warnings == [
        f"dataset {by_modality['audio']}: 12 audio record(s) of 12, but its name 'stage3_video_audio' says this "
        "stage trains video_audio; if that is meant, list them in expect_modalities (modality_mismatch: error "
        "refuses it)"]
    with pytest.raises(UserError, match="unknown modality 'vidoe'.*did you mean 'video'"):
        check_stage(*_args(tiny_model, by_modality["video"], tmp_path / "s", "--expect_modalities", "vidoe"))


def test_a_stage_run_directly_writes_train_log_shows_the_live_line_and_says_what_it_trained(tiny_model, by_modality,
                                                                                            tmp_path):
    out = tmp_path / "stage1_video"
    env = {**os.environ, "HS_RL_CONSOLE": "live", "OMP_NUM_THREADS": "1"}  # the console a terminal gets
    result = subprocess.run(
        [sys.executable, "-m", "hs_rl.train", str(TINY), "--model_name_or_path", str(tiny_model["full"]),
         "--dataset", str(by_modality["video"]), "--output_dir", str(out), "--max_steps", "2", "--report_to", "none"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    console = result.stdout + result.stderr
    assert result.returncode == 0, console[-3000:]
    log = (out / "train.log").read_text()
    # the console: the pipeline's live line; the whole output (the trainer's own metrics lines) is in train.log
    assert "stage1_video  step 2/2" in console and "'grad_norm'" not in console
    assert "'grad_norm'" in log and "13 records (video 13)" in log and "exported full model" in log
    # the dependencies' known-harmless warnings are gone, at their source
    for noise in ("must be `None` or an integer within the vocabulary", "FutureWarning", "cap_pixels_per_frame"):
        assert noise not in log, noise
    card = (out / "README.md").read_text()
    assert "[None]" not in card and "trained with hs-rl" in card
    assert f"`{tiny_model['full']}`" in card and "13 records (video 13)" in card and "**Steps:** 2" in card


def test_a_direct_run_that_stops_at_a_user_error_says_so_on_the_console_and_in_train_log(tiny_model, by_modality,
                                                                                          tmp_path):
    out = tmp_path / "stage1_video"
    result = subprocess.run(
        [sys.executable, "-m", "hs_rl.train", str(TINY), "--model_name_or_path", str(tiny_model["full"]),
         "--dataset", str(by_modality["audio"]), "--output_dir", str(out), "--modality_mismatch", "error"],
        cwd=REPO, env={**os.environ, "HS_RL_CONSOLE": "full"}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = f"hs-rl train: dataset {by_modality['audio']}: 12 audio record(s) of 12, but expect_modalities ['video']"
    ours = [x for x in result.stderr.splitlines() if x.startswith("hs-rl")]
    assert len(ours) == 1 and ours[0].startswith(line) and "use that stage's data" in ours[0]
    assert line in (out / "train.log").read_text()
