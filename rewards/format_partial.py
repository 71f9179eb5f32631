"""Partial format credit: a dense shaping signal toward the <think>…</think><answer>…</answer> format.

0.2 for each of the four tags present once, plus up to 0.2 for tag punctuation ('<', '>', '/') in the text.
The strict `format` reward is 0 for nearly every completion of an untrained model; this one varies across a
group from the first step (even on a random model), which is what gives the tiny CPU demo a gradient and is a
useful warm-up term for a real model (weight it low).
"""
from __future__ import annotations

from typing import Any

from .common import TAGS, completion_text


def format_partial_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """Partial credit per tag present exactly once, plus a small credit for tag punctuation.

    Example:
    >>> scores = format_partial_reward(["<think>a</think><answer>B</answer>", "<answer>B</answer>", "B"])
    >>> [round(s, 2) for s in scores]
    [1.0, 0.6, 0.0]
    """
    scores = []
    for completion in completions:
        text = completion_text(completion)
        tags = sum(0.2 for tag in TAGS if text.count(tag) == 1)
        punctuation = sum(text.count(ch) for ch in "<>/") / max(len(text), 1)
        scores.append(tags + 0.2 * min(1.0, 4 * punctuation))
    return scores
