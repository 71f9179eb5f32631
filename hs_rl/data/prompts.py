"""Prompt wording per question type, and the multimodal chat messages built from a record.

Training and evaluation share these templates, so a model is always asked the same way it was trained.
Our wording is the default; `prompt_source` (a checkout of the HumanSense benchmark code, read by
`hs_rl.data.benchmark_prompts`) swaps in the benchmark's own system and user text instead, for evaluation exactly as
the paper did, or for training on the prompts the model will be evaluated with.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from hs_rl.data.answers import PATTERN_TO_TYPE
from hs_rl.data.benchmark_prompts import NotAsked, load_prompt_source
from hs_rl.data.records import Record, has_video

TYPE_TO_PATTERN: dict[str, str] = {qtype: pattern for pattern, qtype in PATTERN_TO_TYPE.items()}

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


def ours_version(system_prompt: str | None = DEFAULT_SYSTEM_PROMPT) -> str:
    """A short hash of our wording (system turn, task lines, formats, instructions): results record it, so two
    result files asked with different wording never look alike."""
    wording = [system_prompt or "", TASK_LINES, ANSWER_FORMATS, THINK_INSTRUCTION, ANSWER_ONLY_INSTRUCTION]
    return hashlib.sha256(json.dumps(wording, sort_keys=True).encode("utf-8")).hexdigest()[:12]


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
    if has_video(record.modality):
        if not record.video:
            raise ValueError(f"record {record.id}: modality {record.modality} needs a video path")
        return [{"type": "video", "video": record.video}]
    if record.modality == "audio":
        if not record.audio:
            raise ValueError(f"record {record.id}: modality audio needs an audio path")
        return [{"type": "audio", "audio": record.audio}]
    raise ValueError(f"record {record.id}: unknown modality {record.modality!r}")


def benchmark_question(record: Record) -> dict[str, Any]:
    """A record as the benchmark's question dict (pattern, question, options), for its templates."""
    return {"question_pattern": TYPE_TO_PATTERN.get(record.question_type, record.question_type),
            "question": record.question, "options": list(record.options), "task_type": record.task_type}


def benchmark_turns(record: Record, prompt_source: str, think: bool = True) -> tuple[str, str]:
    """(system, user) text the benchmark at `prompt_source` builds for a training record; ValueError if none."""
    source = load_prompt_source(prompt_source)
    try:
        return source.system, source.user_text(benchmark_question(record), think, where=f"record {record.id}")
    except NotAsked as reason:
        raise ValueError(f"record {record.id}: prompt_source {prompt_source}: {reason}") from None


def check_prompt_source(records: list[Record], prompt_source: str | None, think: bool = True) -> None:
    """Before training: every record has a benchmark template (else one error listing them all)."""
    if not prompt_source:
        return
    problems = []
    for record in records:
        try:
            benchmark_turns(record, prompt_source, think)
        except ValueError as err:
            problems.append(str(err))
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise ValueError(f"{len(problems)} record(s) cannot be asked with the benchmark's templates "
                         f"(drop them or train with our prompts):\n  {shown}")


def chat_messages(record: Record, system: str | None, user_text: str) -> list[dict[str, Any]]:
    """System turn (left out when None or empty), then the record's media parts and the user text."""
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
    messages.append({"role": "user", "content": media_parts(record) + [{"type": "text", "text": user_text}]})
    return messages


def build_messages(record: Record, system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
                   think: bool = True, prompt_source: str | None = None) -> list[dict[str, Any]]:
    """The conversation in transformers' multimodal chat format; `system_prompt=None` leaves it out.

    With `prompt_source`, the system and user text are the benchmark's (`system_prompt` is then unused).
    """
    if prompt_source:
        system, text = benchmark_turns(record, prompt_source, think)
        return chat_messages(record, system, text)
    return chat_messages(record, system_prompt, question_text(record, think=think))


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
