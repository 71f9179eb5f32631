"""Reward functions for GRPO, installed as `hs_rl.rewards`: built-ins by name, and the resolver that finds them.

Every function follows TRL's signature ``fn(completions, **kwargs) -> list[float | None]``; dataset
columns (`answer`, `question_type`, `options`) arrive as keyword lists. None means "not applicable".
A reward that takes settings has a factory in `FACTORIES` (a stage YAML's `reward_kwargs` calls it).

- `registry`: reward specs (name, ``module:function``, ``file.py:function``) -> callables;
- `guard`: a failing or non-finite reward is named, or scored 0, instead of poisoning the loss;
- `common`: the completion -> text step and the think/answer tags every reward shares.
"""
from __future__ import annotations

from collections.abc import Callable

from .accuracy import accuracy_reward, strict_accuracy_reward
from .format import answer_format_reward, format_reward
from .format_partial import format_partial_reward
from .think_length import make_think_length_reward, think_length_reward

REGISTRY: dict[str, Callable[..., list]] = {
    "accuracy": accuracy_reward,
    "accuracy_strict": strict_accuracy_reward,
    "format": format_reward,
    "answer_format": answer_format_reward,
    "format_partial": format_partial_reward,
    "think_length": think_length_reward,
}
# Registered rewards that take settings: name -> factory called with the stage's `reward_kwargs[name]`.
FACTORIES: dict[str, Callable[..., Callable[..., list]]] = {
    "think_length": make_think_length_reward,
}

from .registry import get_reward, get_rewards  # noqa: E402  (the resolver reads REGISTRY above)

__all__ = ["REGISTRY", "FACTORIES", "get_reward", "get_rewards", "accuracy_reward", "strict_accuracy_reward",
           "format_reward", "answer_format_reward", "format_partial_reward", "think_length_reward",
           "make_think_length_reward"]
