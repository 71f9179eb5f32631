"""Reward functions for GRPO, by name: `get_reward("accuracy")` (hs_rl.rewards) looks names up here.

Every function follows TRL's signature ``fn(completions, **kwargs) -> list[float | None]``; dataset
columns (`answer`, `question_type`, `options`) arrive as keyword lists. None means "not applicable".
"""
from __future__ import annotations

from typing import Callable

from rewards.accuracy import accuracy_reward, strict_accuracy_reward
from rewards.format import answer_format_reward, format_reward
from rewards.format_partial import format_partial_reward
from rewards.think_length import make_think_length_reward, think_length_reward

REGISTRY: dict[str, Callable[..., list]] = {
    "accuracy": accuracy_reward,
    "accuracy_strict": strict_accuracy_reward,
    "format": format_reward,
    "answer_format": answer_format_reward,
    "format_partial": format_partial_reward,
    "think_length": think_length_reward,
}

__all__ = ["REGISTRY", "accuracy_reward", "strict_accuracy_reward", "format_reward", "answer_format_reward", "format_partial_reward",
           "think_length_reward", "make_think_length_reward"]
