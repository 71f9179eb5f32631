"""Prompt templates per question type and the multimodal chat messages."""
from __future__ import annotations

import pytest

from hs_rl.data.prompts import DEFAULT_SYSTEM_PROMPT, build_messages, question_text, strip_none
from hs_rl.data.records import Record


def make(question_type="single_choice", modality="video", options=None, answer="B"):
    """A record with its media path where the modality expects it."""
    opts = ["A. happy", "B. sad", "C. angry"] if options is None else options
    return Record(id="r1", task_type="T", modality=modality, question="How does she feel?",
                  question_type=question_type, answer=answer, options=opts,
                  video=None if modality == "audio" else "/m/v.mp4",
                  audio="/m/a.wav" if modality == "audio" else None)


@pytest.mark.parametrize("question_type,phrase", [
    ("single_choice", "exactly one option letter"), ("multi_choice", "one or more"),
    ("number", "integer"), ("yes_no", "yes or no")])
def test_each_type_template_ends_with_instruction(question_type, phrase):
    options = [] if question_type in ("number", "yes_no") else None
    text = question_text(make(question_type, options=options))
    last = text.splitlines()[-1]
    assert "<think></think>" in last and "<answer></answer>" in last and phrase in last
    assert "How does she feel?" in text


def test_options_one_per_line_as_given():
    text = question_text(make(options=["A.son/father", "B. friends"]))
    lines = text.splitlines()
    assert "A.son/father" in lines and "B. friends" in lines
    assert "Options:" not in question_text(make("number", options=[]))


@pytest.mark.parametrize("modality,part", [
    ("video", {"type": "video", "video": "/m/v.mp4"}),
    ("video_audio", {"type": "video", "video": "/m/v.mp4"}),
    ("audio", {"type": "audio", "audio": "/m/a.wav"})])
def test_media_parts_per_modality(modality, part):
    messages = build_messages(make(modality=modality))
    system, user = messages
    assert system == {"role": "system", "content": [{"type": "text", "text": DEFAULT_SYSTEM_PROMPT}]}
    assert user["role"] == "user"
    assert user["content"][0] == part
    assert user["content"][1]["type"] == "text" and len(user["content"]) == 2


def test_no_none_keys_anywhere():
    for modality in ("video", "audio", "video_audio"):
        for message in build_messages(make(modality=modality)):
            assert None not in message.values()
            for part in message["content"]:
                assert None not in part.values()


def test_configurable_system_prompt():
    assert build_messages(make(), system_prompt="Be brief.")[0]["content"][0]["text"] == "Be brief."
    messages = build_messages(make(), system_prompt=None)
    assert [m["role"] for m in messages] == ["user"]


def test_think_off_asks_for_answer_only():
    text = build_messages(make(), think=False)[-1]["content"][-1]["text"]
    assert "<answer></answer>" in text and "<think>" not in text


def test_missing_media_or_unknown_type_is_an_error():
    with pytest.raises(ValueError, match="video path"):
        build_messages(Record("x", "T", "video", "q", "yes_no", "yes"))
    with pytest.raises(ValueError, match="question_type"):
        build_messages(make(question_type="essay"))


def test_strip_none_removes_arrow_fills():
    arrow = [{"role": "user", "content": [
        {"type": "video", "video": "/m/v.mp4", "audio": None, "text": None},
        {"type": "text", "text": "q", "video": None, "audio": None}]}]
    assert strip_none(arrow) == [{"role": "user", "content": [
        {"type": "video", "video": "/m/v.mp4"}, {"type": "text", "text": "q"}]}]
    assert arrow[0]["content"][0]["audio"] is None  # input left untouched
