"""Reward functions for GRPO, installed as `hs_rl.rewards`: built-ins by name, and the resolver that finds them.

Every function follows TRL's signature ``fn(completions, **kwargs) -> list[float | None]``; dataset
columns (`answer`, `question_type`, `options`) arrive as keyword lists. None means "not applicable".

- `registry`: the registry (`REGISTRY`, and `FACTORIES` for rewards that take settings) and the resolver of
  reward specs (name, ``module:function``, ``file.py:function``) -> callables, with the one settings rule;
- `guard`: a failing or non-finite reward is named, or scored 0, instead of poisoning the loss;
- `common`: the completion -> text step and the think/answer tags every reward shares.
"""
from __future__ import annotations

from . import _origin  # noqa: F401  (first: refuses another checkout's hs_rl before anything loads)
from .accuracy import accuracy_reward, strict_accuracy_reward
from .format import answer_format_reward, format_reward
from .format_partial import format_partial_reward
from .registry import FACTORIES, REGISTRY, get_reward, get_rewards
from .think_length import make_think_length_reward, think_length_reward

__all__ = ["REGISTRY", "FACTORIES", "get_reward", "get_rewards", "accuracy_reward", "strict_accuracy_reward",
           "format_reward", "answer_format_reward", "format_partial_reward", "think_length_reward",
           "make_think_length_reward"]
