"""HumanSense JSON -> records: patterns, routes, answer normalisation, errors, round trip."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hs_rl.data.answers import normalize_key
from hs_rl.data.convert import (
    ConvertArguments,
    ConvertError,
    convert_file,
    convert_humansense,
    default_routing,
    load_routing,
    run_convert,
)
from hs_rl.data.records import load_records, write_records


def normalize_answer(answer, question_type, options):
    """The converter's reading of a dataset's answer key (answers.normalize_key in strict mode)."""
    return normalize_key(answer, question_type, options, strict=True)

SINGLE = "Multiple-choice question (select one answer choice)"
MULTI = "Multiple-choice question (select one or more answer choices)"
NUMBER = "Question and answer (Arabic numerals)"
YES_NO = "Judgment question (Yes or No)"

EXPECTED_ROUTES = {
    "Fraud_Recognition": "audio", "Psychological_Chat": "audio",
    "Rapport_Recognition": "video_audio", "Emo_Strategy": "video_audio",
    "Talkingperson_Recognition": "video_audio", "Familiarity_Recognition": "video_audio",
    "Relation_Recognition": "video_audio",
    "Abnormal_Recognition": "video", "Some_New_Task": "video",
}


def entry(task="Abnormal_Recognition", pattern=SINGLE, answer="B", options=None, video="videos/a.mp4",
          question="What happens?"):
    """One training-layout entry."""
    opts = ["A. happy", "B. sad", "C. angry", "D. calm"] if options is None else options
    return {"video_path": video, "questions": {"task_type": task, "question_pattern": pattern,
                                               "question": question, "options": opts, "answer": answer}}


def test_default_routing_is_the_recipe():
    routing = default_routing()
    for task, modality in EXPECTED_ROUTES.items():
        assert routing.modality(task) == modality, task


def test_sample_train_json_every_pattern_and_route(sample_data):
    records = convert_file(sample_data["train_json"], media_root=sample_data["media_root"])
    assert {r.question_type for r in records} == {"single_choice", "multi_choice", "number", "yes_no"}
    assert {r.modality for r in records} == {"video", "audio", "video_audio"}
    for record in records:
        assert record.modality == default_routing().modality(record.task_type)
        if record.modality == "audio":
            assert record.video is None and record.audio.endswith(".wav")
        else:
            assert record.audio is None and record.video.endswith(".mp4")
        path = record.video or record.audio
        assert os.path.isabs(path) and Path(path).is_file()
    assert len({r.id for r in records}) == len(records)


def test_benchmark_layout_with_question_lists(sample_data):
    data = json.loads(Path(sample_data["vqa_json"]).read_text())
    assert isinstance(data[0]["questions"], list)
    records = convert_file(sample_data["vqa_json"], media_root=sample_data["media_root"])
    assert len(records) == sum(len(e["questions"]) for e in data)
    assert len({r.id for r in records}) == len(records)


def test_hand_written_entries_every_pattern_and_route(tmp_path):
    entries = [
        entry("Abnormal_Recognition", MULTI, "A, C"),
        entry("Human_Counting", NUMBER, 3, options=[]),
        entry("Familiarity_Recognition", YES_NO, "Yes", options=[]),
        entry("Fraud_Recognition", SINGLE, "(B)", video="audio/x.wav"),
        entry("Rapport_Recognition", SINGLE, "B. sad", options=["A.son/father", "B.friends"]),
    ]
    records = convert_humansense(entries, media_root=tmp_path)
    assert [(r.question_type, r.answer, r.modality) for r in records] == [
        ("multi_choice", "AC", "video"), ("number", "3", "video"), ("yes_no", "yes", "video_audio"),
        ("single_choice", "B", "audio"), ("single_choice", "B", "video_audio")]
    assert records[3].audio == str(tmp_path / "audio" / "x.wav") and records[3].video is None
    assert records[4].options == ["A.son/father", "B.friends"]  # kept exactly as given


@pytest.mark.parametrize("question_type,raw,expected", [
    ("single_choice", "B", "B"), ("single_choice", "B. sad", "B"), ("single_choice", "(B)", "B"),
    ("single_choice", " b ", "B"), ("single_choice", "sad", "B"),
    ("multi_choice", "A,C", "AC"), ("multi_choice", "A, C", "AC"), ("multi_choice", "AC", "AC"),
    ("multi_choice", "CA", "AC"), ("multi_choice", ["C", "A"], "AC"), ("multi_choice", "B", "B"),
    ("number", "3", "3"), ("number", 3, "3"), ("number", "10", "10"), ("number", "3.0", "3"), ("number", 0, "0"),
    ("yes_no", "yes", "yes"), ("yes_no", "No.", "no"), ("yes_no", "YES", "yes"), ("yes_no", True, "yes"),
])
def test_answer_normalisation(question_type, raw, expected):
    assert normalize_answer(raw, question_type, ["A. happy", "B. sad", "C. angry", "D. calm"]) == expected


@pytest.mark.parametrize("question_type,raw", [
    ("single_choice", "happy or sad"), ("number", "3.5"), ("number", "three-ish"), ("yes_no", "maybe")])
def test_answer_normalisation_rejects(question_type, raw):
    with pytest.raises(ValueError):
        normalize_answer(raw, question_type, ["A. x", "B. y"])


def test_unknown_pattern_names_file_and_entry(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps([entry(), entry(pattern="Essay question")]))
    with pytest.raises(ConvertError, match=r"in\.json: entry 1: unknown question_pattern 'Essay question'"):
        convert_file(path)


def test_missing_field_and_bad_answer_name_entry(tmp_path):
    bad = entry()
    del bad["questions"]["answer"]
    with pytest.raises(ConvertError, match=r"entry 2: missing field 'answer'"):
        convert_humansense([entry(), entry(question="x"), bad], source="f.json")
    with pytest.raises(ConvertError, match=r"entry 0: .*'maybe'"):
        convert_humansense([entry(pattern=YES_NO, answer="maybe", options=[])])
    with pytest.raises(ConvertError, match=r"entry 0: missing field 'video_path'"):
        convert_humansense([{"questions": entry()["questions"]}])


def test_routing_override_by_yaml(tmp_path):
    override = tmp_path / "routes.yaml"
    override.write_text("Abnormal_Recognition: video_audio\nFraud_Recognition: video\n")
    routing = load_routing(override, default_modality="audio")
    assert routing.modality("Abnormal_Recognition") == "video_audio"
    assert routing.modality("Fraud_Recognition") == "video"
    assert routing.modality("Emo_Strategy") == "video_audio"  # untouched default kept
    assert routing.modality("Unlisted") == "audio"
    bad = tmp_path / "bad.yaml"
    bad.write_text("Abnormal_Recognition: smell\n")
    with pytest.raises(ConvertError, match="smell"):
        load_routing(bad)


def test_ids_stable_and_unique():
    first = convert_humansense([entry(), entry(question="Who?"), entry()])
    again = convert_humansense([entry(question="Who?"), entry(), entry()])
    assert len({r.id for r in first}) == 3
    assert first[0].id == again[1].id and first[1].id == again[0].id
    assert first[0].id.startswith("Abnormal_Recognition-")


def test_relative_paths_option(tmp_path):
    kept = convert_humansense([entry()], media_root=tmp_path, relative_paths=True)
    assert kept[0].video == "videos/a.mp4"


def test_run_convert_round_trip(sample_data, tmp_path, capsys):
    out = tmp_path / "out" / "records.jsonl"
    args = ConvertArguments(input=str(sample_data["train_json"]), output=str(out),
                            media_root=str(sample_data["media_root"]))
    assert run_convert(args) == 0
    assert "wrote 50 records" in capsys.readouterr().out or out.is_file()
    loaded = load_records(out)
    direct = convert_file(sample_data["train_json"], media_root=sample_data["media_root"])
    assert loaded == direct
    again = tmp_path / "again.jsonl"
    write_records(loaded, again)
    assert load_records(again) == loaded


def test_run_convert_reports_bad_input(tmp_path, capsys):
    path = tmp_path / "in.json"
    path.write_text(json.dumps([entry(pattern="Essay question")]))
    assert run_convert(ConvertArguments(input=str(path), output=str(tmp_path / "o.jsonl"))) == 1
    assert "entry 0" in capsys.readouterr().out


def test_cli_parses_convert(sample_data, tmp_path):
    from hs_rl.cli import main

    out = tmp_path / "cli.jsonl"
    code = main(["convert", str(sample_data["train_json"]), str(out), "--media_root", str(sample_data["media_root"])])
    assert code == 0 and len(load_records(out)) == 50


def test_a_wrong_media_root_is_refused_naming_how_many_and_one(sample_data, tmp_path, capsys):
    """A --media_root the JSON's paths are not relative to used to write every record pointing nowhere, silently."""
    out = tmp_path / "all.jsonl"
    wrong = tmp_path / "elsewhere"
    args = ConvertArguments(input=str(sample_data["train_json"]), output=str(out), media_root=str(wrong))
    assert run_convert(args) == 1
    line = capsys.readouterr().out.strip()
    first = convert_file(sample_data["train_json"], media_root=wrong)[0]
    assert line.startswith(f"hs-rl convert: 50 of 50 records name media that do not exist under --media_root {wrong}: "
                           f"23 file(s), e.g. {first.media_paths()[0]} (record {first.id}); nothing written")
    assert "--allow_missing_media true" in line and not out.exists()
    args.allow_missing_media = True  # written on request, still named
    assert run_convert(args) == 0
    assert capsys.readouterr().out.startswith("WARNING hs-rl convert: 50 of 50 records") and out.is_file()


def test_validate_data_hint_fits_absolute_paths(sample_data, tmp_path, capsys):
    """Records holding absolute paths (what convert writes): --media_root cannot help them, the hint says so."""
    from hs_rl.data.validation import ValidateArguments, run_validate

    out = tmp_path / "all.jsonl"
    run_convert(ConvertArguments(input=str(sample_data["train_json"]), output=str(out),
                                 media_root=str(tmp_path / "elsewhere"), allow_missing_media=True))
    capsys.readouterr()
    assert run_validate(ValidateArguments(path=str(out), no_cache=True)) == 1
    hint = capsys.readouterr().out.splitlines()[-1]
    assert hint.startswith("hint: the records name absolute paths") and "convert the HumanSense JSON again" in hint
    relative = tmp_path / "relative.jsonl"
    write_records([r for r in load_records(out)][:1], relative)
    record = load_records(relative)[0]
    record.video, record.audio = ("clips/a.mp4", None) if record.video else (None, "clips/a.wav")
    write_records([record], relative)
    assert run_validate(ValidateArguments(path=str(relative), no_cache=True)) == 1
    assert "pass --media_root" in capsys.readouterr().out.splitlines()[-1]
