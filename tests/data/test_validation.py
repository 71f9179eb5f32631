"""validate-data: every problem in one run, with locations; HumanSense JSON input; the clean-result cache."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from hs_rl.data import media
from hs_rl.data.convert import convert_file
from hs_rl.data.records import write_records
from hs_rl.data.validation import ValidateArguments, filter_valid, run_validate, validate_file, write_dropped
from tests.data.broken_media import audio_track_cut, cut_wav, sliver_video, tone_wav, video_cut_partway

OPTIONS = ["A. happy", "B. sad", "C. angry", "D. calm"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Each test gets its own cache folder, never ~/.cache."""
    monkeypatch.setenv("HS_RL_CACHE_DIR", str(tmp_path / "cache"))


def rec(id, modality="video", video=None, audio=None, question_type="single_choice", answer="B", options=OPTIONS):
    """One records-JSONL object."""
    return {"id": id, "task_type": "T", "modality": modality, "question": "q?", "question_type": question_type,
            "answer": answer, "options": options, "video": video, "audio": audio}


def write_jsonl(path: Path, objects: list[dict]) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objects))
    return path


@pytest.fixture
def bad_file(sample_data, tmp_path) -> Path:
    """One JSONL with a clean record on line 1 and one distinct problem on each following line."""
    good_video = str(sample_data["video_with_audio"])
    truncated = tmp_path / "truncated.mp4"
    data = Path(good_video).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    bad_wav = tmp_path / "bad.wav"
    bad_wav.write_bytes(b"JUNK" + Path(sample_data["wav"]).read_bytes()[4:])
    silent = str(sample_data["video_without_audio"])
    return write_jsonl(tmp_path / "bad.jsonl", [
        rec("ok", video=good_video),                                                    # 1
        rec("trunc", video=str(truncated)),                                             # 2
        rec("silent", modality="video_audio", video=silent),                           # 3
        rec("badwav", modality="audio", audio=str(bad_wav)),                           # 4
        rec("missing", video=str(tmp_path / "nowhere.mp4")),                           # 5
        rec("letter", video=good_video, answer="E"),                                   # 6
        rec("ok", video=good_video),                                                    # 7 duplicate id
        rec("num", video=good_video, question_type="number", answer="3.5", options=[]),  # 8
        rec("yn", video=good_video, question_type="yes_no", answer="maybe", options=[]),  # 9
        rec("qt", video=good_video, question_type="essay"),                            # 10
    ])


EXPECTED = {
    "line 2": ("trunc", "video does not decode"),
    "line 3": ("silent", "no audio track"),
    "line 4": ("badwav", "audio does not decode"),
    "line 5": ("missing", "not found"),
    "line 6": ("letter", "'E' is not among the option letters ABCD"),
    "line 7": ("ok", "duplicate id (first at line 1)"),
    "line 8": ("num", "not an integer"),
    "line 9": ("yn", "'maybe'"),
    "line 10": ("qt", "unknown question_type 'essay'"),
}


def test_every_problem_reported_in_one_run(bad_file, capsys):
    report = validate_file(bad_file)
    found = {p.location: p for p in report.problems}
    assert set(found) == set(EXPECTED), report.format()
    for location, (record_id, reason) in EXPECTED.items():
        problem = found[location]
        assert problem.record_id == record_id and reason in problem.reason, problem.format()
        assert problem.file == str(bad_file)
    assert run_validate(ValidateArguments(path=str(bad_file))) == 1
    printed = capsys.readouterr().out
    assert "9 problems" in printed and f"{bad_file}: line 6 [letter]:" in printed


def test_filter_valid_and_write_dropped(bad_file, tmp_path):
    kept, dropped = filter_valid(validate_file(bad_file))
    assert [r.id for r in kept] == ["ok"]  # the first "ok"; its duplicate on line 7 is dropped
    assert len(dropped) == len(EXPECTED)
    out = tmp_path / "dropped.jsonl"
    write_dropped(dropped, out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["location"] for r in rows} == set(EXPECTED) and {"file", "record_id", "reason"} <= set(rows[0])


def test_broken_lines_and_missing_fields_do_not_stop_the_run(tmp_path, sample_data):
    path = tmp_path / "broken.jsonl"
    path.write_text("{not json\n" + json.dumps({"id": "x"}) + "\n\n"
                    + json.dumps(rec("fine", video=str(sample_data["video_with_audio"]))) + "\n")
    report = validate_file(path)
    assert [(p.location, p.record_id) for p in report.problems] == [("line 1", None), ("line 2", "x")]
    assert [r.id for r in report.records] == ["fine"]


def test_modality_path_required(tmp_path, sample_data):
    path = write_jsonl(tmp_path / "paths.jsonl", [
        rec("a", modality="audio", video=str(sample_data["video_with_audio"])),
        rec("v", modality="video_audio", audio=str(sample_data["wav"])),
        rec("m", modality="smell", video=str(sample_data["video_with_audio"]))])
    reasons = {p.record_id: p.reason for p in validate_file(path).problems}
    assert "needs an audio path" in reasons["a"] and "needs a video path" in reasons["v"]
    assert "unknown modality 'smell'" in reasons["m"]


def test_choice_without_options(tmp_path, sample_data):
    path = write_jsonl(tmp_path / "o.jsonl", [rec("n", video=str(sample_data["video_with_audio"]), options=[])])
    assert "has no options" in validate_file(path).problems[0].reason


def test_clean_sample_passes(sample_data, tmp_path):
    records_path = tmp_path / "records.jsonl"
    write_records(convert_file(sample_data["train_json"], media_root=sample_data["media_root"]), records_path)
    report = validate_file(records_path, use_cache=False)
    assert report.ok, report.format()
    assert len(report.records) == 50
    assert run_validate(ValidateArguments(path=str(records_path), no_cache=True)) == 0


def test_humansense_json_validated_in_memory(sample_data, tmp_path):
    report = validate_file(sample_data["train_json"], media_root=sample_data["media_root"], use_cache=False)
    assert report.ok, report.format()
    assert report.locations[0] == "entry 0"
    entries = json.loads(Path(sample_data["train_json"]).read_text())
    entries[3]["questions"]["question_pattern"] = "Essay question"
    entries[5]["video_path"] = "videos/nowhere.mp4"
    bad = tmp_path / "hs.json"
    bad.write_text(json.dumps(entries))
    report = validate_file(bad, media_root=sample_data["media_root"])
    found = {p.location: p.reason for p in report.problems}
    assert set(found) == {"entry 3", "entry 5"}
    assert "unknown question_pattern" in found["entry 3"] and "not found" in found["entry 5"]


def test_benchmark_json_locations_name_questions(sample_data):
    report = validate_file(sample_data["vqa_json"], media_root=sample_data["media_root"], use_cache=False)
    assert report.ok and any(", question 1" in where for where in report.locations)


def test_cache_skips_decoding_and_media_change_invalidates(sample_data, tmp_path, monkeypatch):
    media_dir = tmp_path / "media"
    shutil.copytree(sample_data["media_root"], media_dir)
    records_path = tmp_path / "records.jsonl"
    records = convert_file(sample_data["train_json"], media_root=media_dir)
    write_records(records, records_path)
    first = validate_file(records_path)
    assert first.ok and not first.cached
    assert list((tmp_path / "cache" / "validation").glob("*.json"))

    def forbidden(path):
        raise AssertionError(f"decoded {path} despite a cached clean result")

    monkeypatch.setattr(media, "probe_video", forbidden)
    monkeypatch.setattr(media, "probe_audio", forbidden)
    second = validate_file(records_path)
    assert second.ok and second.cached and len(second.records) == 50
    assert run_validate(ValidateArguments(path=str(records_path))) == 0

    calls = []
    monkeypatch.setattr(media, "probe_video", lambda p: calls.append(p) or media.VideoInfo(10, 10.0, 1.0, True))
    monkeypatch.setattr(media, "probe_audio", lambda p: calls.append(p) or media.AudioInfo(1.0, 16000))
    clip = Path(next(r.video for r in records if r.video))
    stat = clip.stat()
    os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    third = validate_file(records_path)
    assert not third.cached and calls  # a replaced media file forces a fresh check
    calls.clear()
    assert not validate_file(records_path, use_cache=False).cached and calls


def test_problems_are_not_cached(bad_file):
    validate_file(bad_file)
    assert not validate_file(bad_file).cached


def test_cli_validate(bad_file):
    from hs_rl.cli import main

    assert main(["validate-data", str(bad_file), "--no_cache"]) == 1


def test_files_cut_short_are_refused_naming_file_record_and_problem(sample_data, tmp_path, capsys):
    """Each of these decodes without an error in PyAV (what is left of it), so only the declared lengths and the
    frame rules tell: a wav cut to its header, a wav holding a third of its data, a clip cut partway, a clip whose
    audio track lost its end, a clip no frame size fits, a clip too short to give an audio token."""
    clip = sample_data["video_with_audio"]
    empty = cut_wav(tone_wav(tmp_path / "empty.wav"), 0.0)
    third = cut_wav(tone_wav(tmp_path / "third.wav"), 1 / 3)
    partway = video_cut_partway(clip, tmp_path / "partway.mp4")
    no_tail = audio_track_cut(clip, tmp_path / "no_tail.mp4")
    sliver = sliver_video(tmp_path / "sliver.mp4")
    blip = tone_wav(tmp_path / "blip.wav", seconds=0.006)
    path = write_jsonl(tmp_path / "cut.jsonl", [
        rec("ok", modality="video_audio", video=str(clip)),
        rec("empty", modality="audio", audio=str(empty)),
        rec("third", modality="audio", audio=str(third)),
        rec("partway", video=str(partway)),
        rec("no_tail", modality="video_audio", video=str(no_tail)),
        rec("sliver", video=str(sliver)),
        rec("blip", modality="audio", audio=str(blip)),
    ])
    expected = {
        "line 2": ("empty", f"audio does not decode: {empty}: truncated wav, its header declares 3.00 s of audio "
                            "and the file holds 0.00 s"),
        "line 3": ("third", f"audio does not decode: {third}: truncated wav, its header declares 3.00 s of audio "
                            "and the file holds 1.00 s"),
        "line 4": ("partway", f"video does not decode: {partway}: truncated video, decoded"),
        "line 5": ("no_tail", f"audio track does not decode: {no_tail}: truncated audio, decoded 1.9"),
        "line 6": ("sliver", f"video does not decode: {sliver}: frame size 402x2 has an aspect ratio above 200"),
        "line 7": ("blip", f"audio does not decode: {blip}: audio is 6 ms long, under the 100 ms"),
    }
    report = validate_file(path)
    found = {p.location: (p.record_id, p.reason) for p in report.problems}
    assert set(found) == set(expected), report.format()
    for location, (record_id, reason) in expected.items():
        assert found[location][0] == record_id and found[location][1].startswith(reason), found[location]
    assert run_validate(ValidateArguments(path=str(path))) == 1
    printed = capsys.readouterr().out
    assert "6 problems" in printed and f"{path}: line 3 [third]: audio does not decode: {third}: truncated" in printed
