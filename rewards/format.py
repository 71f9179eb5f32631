"""Format reward: the completion is one <think> block then one <answer> block, and nothing else."""
from __future__ import annotations

import re
from typing import Any

from hs_rl.data.answers import extract_answer, is_well_formed
from hs_rl.data.records import QUESTION_TYPES

from .common import TAGS, column, completion_text

_SHAPE = re.compile(r"^\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*$", re.DOTALL)


def follows_format(text: str) -> bool:
    """Exactly one of each tag, in order, only whitespace outside them, and a non-empty answer."""
    if any(text.count(tag) != 1 for tag in TAGS):
        return False
    match = _SHAPE.match(text)
    return bool(match) and bool(match.group(2).strip())


def format_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """1.0 for "<think>...</think><answer>...</answer>" (whitespace allowed around them), else 0.0.

    Example (plain strings or chat messages, as TRL passes them):
    >>> format_reward(["<think>She frowns.</think>\\n<answer>B</answer>",
    ...                [{"role": "assistant", "content": "<answer>B</answer>"}],
    ...                "<think>x</think><answer>B</answer> trailing text"])
    [1.0, 0.0, 0.0]
    """
    return [1.0 if follows_format(completion_text(c)) else 0.0 for c in completions]


def answer_format_reward(completions: list[Any], **kwargs: Any) -> list[float | None]:
    """1.0 when exactly one <answer> block holds a readable answer for the row's question type.

    Readable means right or wrong but parseable: one option letter (single choice), option letters
    (multi choice), one integer, or yes/no. None for rows without a known question_type.

    Example (a wrong letter still scores 1.0: only readability counts):
    >>> answer_format_reward(["<answer>C</answer>", "<answer>maybe</answer>", "<answer>3</answer>"],
    ...                      question_type=["single_choice", "yes_no", "essay"],
    ...                      options=[["A. calm", "B. angry", "C. sad"], [], []])
    [1.0, 0.0, None]
    """
    n = len(completions)
    types = column(kwargs, "question_type", n)
    options = column(kwargs, "options", n)
    rewards: list[float | None] = []
    for completion, qtype, opts in zip(completions, types, options):
        text = completion_text(completion)
        if qtype not in QUESTION_TYPES:
            rewards.append(None)
        elif text.count("<answer>") != 1 or text.count("</answer>") != 1:
            rewards.append(0.0)
        else:
            rewards.append(1.0 if is_well_formed(extract_answer(text), qtype, opts or []) else 0.0)
    return rewards
