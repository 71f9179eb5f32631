"""Prompt wording per question type, and the multimodal chat messages built from a record.

Training and evaluation share these templates, so a model is always asked the same way it was trained.
"""
from __future__ import annotations

from typing import Any

from hs_rl.data.records import Record

DEFAULT_SYSTEM_PROMPT = (
    "You are an attentive observer of people. Watch and listen closely to the clip you are given: "
    "faces, gestures, posture, voices, tone and what is said. Then answer the question about the people in it."
)

# What a correct final answer looks like, per question type.
ANSWER_FORMATS: dict[str, str] = {
    "single_choice": "exactly one option letter, for example B",
    "multi_choice": "every correct option letter, one or more, written together, for example AC",
    "number": "a single integer written in digits, for example 3",
    "yes_no": "yes or no",
}

# The task sentence that opens each question block.
TASK_LINES: dict[str, str] = {
    "single_choice": "Choose the one option that answers the question.",
    "multi_choice": "Choose all options that answer the question; more than one may be correct.",
    "number": "Answer the question with a count.",
    "yes_no": "Answer the question with yes or no.",
}

THINK_INSTRUCTION = (
    "First reason step by step inside <think></think>, then give the final answer inside <answer></answer>. "
    "The final answer must be {fmt}."
)
ANSWER_ONLY_INSTRUCTION = (
    "Reply with the final answer only, inside <answer></answer>. The final answer must be {fmt}."
)


def question_text(record: Record, think: bool = True) -> str:
    """The text part of the user turn: task line, question, options one per line, answer instruction."""
    question_type = record.question_type
    if question_type not in ANSWER_FORMATS:
        raise ValueError(f"record {record.id}: no prompt template for question_type {question_type!r}")
    lines = [TASK_LINES[question_type], "", f"Question: {record.question.strip()}"]
    if record.options:
        lines += ["Options:", *[str(option).strip() for option in record.options]]
    instruction = THINK_INSTRUCTION if think else ANSWER_ONLY_INSTRUCTION
    lines += ["", instruction.format(fmt=ANSWER_FORMATS[question_type])]
    return "\n".join(lines)


def media_parts(record: Record) -> list[dict[str, Any]]:
    """Content parts for the record's media: a video part (video, video_audio) or an audio part (audio)."""
    if record.modality in ("video", "video_audio"):
        if not record.video:
            raise ValueError(f"record {record.id}: modality {record.modality} needs a video path")
        return [{"type": "video", "video": record.video}]
    if record.modality == "audio":
        if not record.audio:
            raise ValueError(f"record {record.id}: modality audio needs an audio path")
        return [{"type": "audio", "audio": record.audio}]
    raise ValueError(f"record {record.id}: unknown modality {record.modality!r}")


def build_messages(record: Record, system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
                   think: bool = True) -> list[dict[str, Any]]:
    """The conversation in transformers' multimodal chat format; `system_prompt=None` leaves it out."""
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    content = media_parts(record) + [{"type": "text", "text": question_text(record, think=think)}]
    messages.append({"role": "user", "content": content})
    return messages


def strip_none(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop None-valued keys that Arrow adds to content parts, so media loaders see only real keys."""
    cleaned = []
    for message in messages:
        message = {k: v for k, v in message.items() if v is not None}
        content = message.get("content")
        if isinstance(content, list):
            message["content"] = [
                {k: v for k, v in part.items() if v is not None} if isinstance(part, dict) else part
                for part in content
            ]
        cleaned.append(message)
    return cleaned
