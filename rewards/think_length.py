"""Think-length reward: keeps reasoning present but bounded, so completions do not hit the length cap."""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .common import completion_text

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
DEFAULT_MIN_WORDS = 16
DEFAULT_MAX_WORDS = 512


def think_words(text: str) -> int | None:
    """Word count of the first complete <think> block, or None when there is none."""
    match = _THINK.search(text)
    return None if match is None else len(match.group(1).split())


def length_score(words: int | None, min_words: int, max_words: int) -> float:
    """1.0 inside [min_words, max_words]; rising linearly below, falling to 0 at twice the maximum."""
    if words is None:
        return 0.0
    if words < min_words:
        return words / min_words if min_words > 0 else 1.0
    if words <= max_words:
        return 1.0
    return max(0.0, 1.0 - (words - max_words) / max_words)


def make_think_length_reward(min_words: int = DEFAULT_MIN_WORDS,
                             max_words: int = DEFAULT_MAX_WORDS) -> Callable[..., list[float]]:
    """Build a think-length reward with its own word budget (named so TRL logs the budget).

    A stage YAML reaches it through `reward_kwargs`: ``reward_kwargs: {think_length: {max_words: 256}}``.

    Example:
    >>> reward = make_think_length_reward(min_words=2, max_words=4)
    >>> reward.__name__
    'think_length_2_4'
    >>> reward(["<think>she looks away</think><answer>B</answer>", "<think>hm</think>", "<answer>B</answer>"])
    [1.0, 0.5, 0.0]
    """
    if not 0 <= min_words <= max_words or max_words <= 0:
        raise ValueError(f"need 0 <= min_words <= max_words and max_words > 0, got {min_words}, {max_words}")

    def reward(completions: list[Any], **kwargs: Any) -> list[float]:
        return [length_score(think_words(completion_text(c)), min_words, max_words) for c in completions]

    reward.__name__ = f"think_length_{min_words}_{max_words}"
    reward.__doc__ = f"1.0 when the <think> block has {min_words}-{max_words} words; less outside; 0 without one."
    return reward


def think_length_reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """Default budget: 1.0 for a <think> block of 16-512 words, partial outside, 0.0 without one.

    Example:
    >>> think_length_reward(["<think>" + "word " * 100 + "</think><answer>A</answer>", "<think>too short</think>"])
    [1.0, 0.125]
    """
    return [length_score(think_words(completion_text(c)), DEFAULT_MIN_WORDS, DEFAULT_MAX_WORDS)
            for c in completions]
