"""Accuracy reward: the benchmark's own scoring (hs_rl.data.answers), so training optimises what is reported.

Rows whose question_type is missing or unknown, or whose answer key is missing, get None ("not
applicable"): TRL then leaves this reward out of that row's sum instead of treating it as wrong.
"""
from __future__ import annotations

from typing import Any

from hs_rl.data.answers import score_answer
from hs_rl.data.records import QUESTION_TYPES

from .common import column, completion_text


def _accuracy(completions: list[Any], tagged: bool, kwargs: dict[str, Any]) -> list[float | None]:
    """Score each completion against its row's key; None where the row cannot be scored."""
    n = len(completions)
    keys = column(kwargs, "answer", n)
    types = column(kwargs, "question_type", n)
    options = column(kwargs, "options", n)
    rewards: list[float | None] = []
    for completion, key, qtype, opts in zip(completions, keys, types, options):
        if qtype not in QUESTION_TYPES or key is None:
            rewards.append(None)
            continue
        rewards.append(score_answer(completion_text(completion), key, qtype, opts or [], tagged=tagged))
    return rewards


def accuracy_reward(completions: list[Any], **kwargs: Any) -> list[float | None]:
    """1 / 0.5 (multi-choice subset) / 0; reads the last <answer> block, or the bare text without one.

    Example (dataset columns arrive as lists, one value per completion):
    >>> accuracy_reward(["<think>...</think><answer>B</answer>", "<answer>AC</answer>", "B"],
    ...                 answer=["B", "ABC", "B"], question_type=["single_choice", "multi_choice", "single_choice"],
    ...                 options=[["A. calm", "B. angry"], ["A. x", "B. y", "C. z"], ["A. calm", "B. angry"]])
    [1.0, 0.5, 1.0]
    """
    return _accuracy(completions, False, kwargs)


def strict_accuracy_reward(completions: list[Any], **kwargs: Any) -> list[float | None]:
    """Like accuracy_reward, but an answer outside an <answer> block scores 0.

    Example:
    >>> strict_accuracy_reward(["<answer>yes</answer>", "yes"], answer=["yes", "yes"],
    ...                        question_type=["yes_no", "yes_no"])
    [1.0, 0.0]
    """
    return _accuracy(completions, True, kwargs)
