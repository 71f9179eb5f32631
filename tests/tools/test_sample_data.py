"""The generated sample data has HumanSense's shapes, every pattern and route, and real media behind it."""
from __future__ import annotations

import json
import re
from pathlib import Path

from hs_rl.data.media import has_audio_track
from hs_rl.tools.fixture_writing import SINGLE
from hs_rl.tools.sample_data import (
    AUDIO_ONLY_TASKS,
    MULTI,
    NUMBER,
    VIDEO_AUDIO_TASKS,
    YES_NO,
    SampleDataArguments,
    make_sample_data,
    run_make_sample_data,
)

PATTERNS = {SINGLE, MULTI, NUMBER, YES_NO}


def _load(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def _benchmark_questions(path: Path) -> list[tuple[str, dict]]:
    return [(entry["video_path"], q) for entry in _load(path) for q in entry["questions"]]


def _train_questions(sample_data) -> list[tuple[str, dict]]:
    return [(entry["video_path"], entry["questions"]) for entry in _load(sample_data["train_json"])]


def test_keys_and_files_exist(sample_data):
    expected = {"root", "media_root", "train_json", "vqa_json", "aqa_json", "video_with_audio",
                "video_without_audio", "wav", "long_wav"}
    assert set(sample_data) == expected
    assert all(Path(p).exists() for p in sample_data.values())
    assert (sample_data["root"] / "DONE").is_file()


def test_train_json_shape_and_coverage(sample_data):
    entries = _load(sample_data["train_json"])
    assert 40 <= len(entries) <= 60
    for entry in entries:
        assert set(entry) == {"video_path", "questions"}
        assert isinstance(entry["questions"], dict)
        assert set(entry["questions"]) == {"task_type", "question_pattern", "question", "options", "answer"}
    questions = [q for _, q in _train_questions(sample_data)]
    assert {q["question_pattern"] for q in questions} == PATTERNS
    tasks = {q["task_type"] for q in questions}
    assert set(AUDIO_ONLY_TASKS) <= tasks and set(VIDEO_AUDIO_TASKS) <= tasks
    assert {"Abnormal_Recognition", "Action_Recognition", "Human_Counting"} <= tasks


def test_option_styles_and_answers(sample_data):
    questions = [q for _, q in _train_questions(sample_data)] + \
        [q for _, q in _benchmark_questions(sample_data["vqa_json"])]
    options = [o for q in questions for o in q["options"]]
    assert any(re.match(r"^[A-E]\. \S", o) for o in options)   # "A. happy"
    assert any(re.match(r"^[A-E]\.\S", o) for o in options)    # "A.son/father"
    for q in questions:
        letters = "ABCDE"[: len(q["options"])]
        if q["question_pattern"] == SINGLE:
            assert 2 <= len(q["options"]) <= 5 and len(q["answer"]) == 1 and q["answer"] in letters
        elif q["question_pattern"] == MULTI:
            assert q["answer"] and all(c in letters for c in q["answer"])
        elif q["question_pattern"] == NUMBER:
            assert 0 <= int(q["answer"]) <= 10 and q["options"] == []
        else:
            assert q["answer"] in ("Yes", "No")


def test_routes_point_at_the_right_media(sample_data):
    media = sample_data["media_root"]
    pairs = _train_questions(sample_data) + _benchmark_questions(sample_data["vqa_json"]) + \
        _benchmark_questions(sample_data["aqa_json"])
    silent_video_only = 0
    for relative, q in pairs:
        path = media / relative
        assert path.is_file(), relative
        if q["task_type"] in AUDIO_ONLY_TASKS:
            assert path.suffix == ".wav"
        else:
            assert path.suffix == ".mp4"
            if q["task_type"] in VIDEO_AUDIO_TASKS:
                assert has_audio_track(path), relative
            elif not has_audio_track(path):
                silent_video_only += 1
    assert silent_video_only > 0


def test_benchmark_files(sample_data):
    vqa = _load(sample_data["vqa_json"])
    aqa = _load(sample_data["aqa_json"])
    for entry in vqa + aqa:
        assert isinstance(entry["questions"], list) and entry["questions"]
    vqa_q = _benchmark_questions(sample_data["vqa_json"])
    aqa_q = _benchmark_questions(sample_data["aqa_json"])
    assert 20 <= len(vqa_q) <= 30 and 6 <= len(aqa_q) <= 10
    assert {q["task_type"] for _, q in aqa_q} == set(AUDIO_ONLY_TASKS)
    assert not {q["task_type"] for _, q in vqa_q} & set(AUDIO_ONLY_TASKS)


def test_media_variety(sample_data):
    clips = sorted((sample_data["media_root"] / "media" / "videos").glob("*.mp4"))
    wavs = sorted((sample_data["media_root"] / "media" / "audio").glob("*.wav"))
    assert 24 <= len(clips) <= 30 and 6 <= len(wavs) <= 9
    with_audio = sum(has_audio_track(c) for c in clips)
    assert 0.3 * len(clips) <= with_audio <= 0.7 * len(clips)


def test_idempotent_and_deterministic(sample_data, tmp_path):
    root = sample_data["root"]
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    again = make_sample_data(root)
    assert again == sample_data
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == stamps

    copy = make_sample_data(tmp_path / "copy", seed=0)
    for key in ("train_json", "vqa_json", "aqa_json"):
        assert copy[key].read_text() == sample_data[key].read_text()


def test_incomplete_dir_is_rebuilt(tmp_path):
    paths = make_sample_data(tmp_path / "d", seed=3)
    (paths["root"] / "DONE").unlink()
    paths["train_json"].unlink()
    rebuilt = make_sample_data(tmp_path / "d", seed=3)
    assert rebuilt["train_json"].is_file() and (rebuilt["root"] / "DONE").is_file()


def test_cli_entry(tmp_path, capsys):
    assert run_make_sample_data(SampleDataArguments(output_dir=str(tmp_path / "cli"))) == 0
    out = capsys.readouterr().out
    assert "train_json" in out and (tmp_path / "cli" / "DONE").is_file()


def test_write_clip_length_rate_and_size_can_be_chosen(tmp_path):
    """benchmarks/grpo_step.py --recipe writes longer, larger clips than the sample set's (media-heavy prompts)."""
    import numpy as np

    from hs_rl.data.media import load_audio, open_video, probe_video
    from hs_rl.tools.fixture_writing import AUDIO_RATE
    from hs_rl.tools.sample_data import write_clip

    path = tmp_path / "long.mp4"  # clip 0 is 2 s at 10 fps by default
    write_clip(path, 0, np.random.default_rng(0), with_audio=True, seconds=3.0, fps=6, size_wh=(224, 112))
    info = probe_video(path)
    assert info.num_frames == 18 and abs(info.fps - 6) < 1e-6
    frame = open_video(path)[0].asnumpy()
    assert frame.shape == (112, 224, 3)
    assert abs(load_audio(path).size / AUDIO_RATE - 3.0) < 0.1
