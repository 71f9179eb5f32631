"""Wrap reward functions so a failing or non-finite reward is named precisely instead of poisoning the loss.

TRL calls ``fn(prompts=…, completions=…, completion_ids=…, **columns)``. A reward that raises, or returns a
NaN/inf, stops the run with the reward's name, the sample id and the completion, unless the stage sets
`reward_errors: zero`, in which case that score is 0 and counted (`rewards/<name>/errors` in the logs).
`None` is left alone: it means "not applicable", and TRL excludes it.
"""
from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import Literal

from .common import completion_text

logger = logging.getLogger(__name__)


class RewardError(RuntimeError):
    """A reward function failed on a sample."""


def guard_reward(fn: Callable, on_error: Literal["raise", "zero"], counter: dict[str, int]) -> Callable:
    """The reward `fn`, checked sample by sample; errors raise or score 0 (`on_error`: raise | zero)."""
    base = fn
    while isinstance(base, functools.partial):
        base = base.func
    name = getattr(base, "__name__", type(base).__name__)  # the name TRL logs the reward under

    def fail(message: str) -> None:
        if on_error == "raise":
            raise RewardError(message + " (set reward_errors: zero in the stage to score such samples 0)")
        counter[name] = counter.get(name, 0) + 1
        logger.warning(message + "; scored 0")

    @functools.wraps(fn)
    def guarded(*args, completions, **kwargs) -> list[float | None]:
        ids = kwargs.get("id") or [None] * len(completions)
        try:
            values = list(fn(*args, completions=completions, **kwargs))
        except Exception:  # one failure for the whole batch: re-run per sample to name the culprit
            # every sample appends one value (its score, or 0 after `fail`, which raises unless on_error is zero)
            values = []
            for i, completion in enumerate(completions):
                one = {k: (v[i:i + 1] if isinstance(v, list) and len(v) == len(completions) else v)
                       for k, v in kwargs.items()}
                try:
                    values.append(fn(*args, completions=[completion], **one)[0])
                except Exception as inner:
                    fail(f"reward {name!r} raised {type(inner).__name__}: {inner} on sample {ids[i]!r}, "
                         f"completion {completion_text(completion)[:200]!r}")
                    values.append(0.0)
        if len(values) != len(completions):
            raise RewardError(f"reward {name!r} returned {len(values)} scores for {len(completions)} completions")
        for i, value in enumerate(values):
            if value is not None and not math.isfinite(float(value)):
                fail(f"reward {name!r} returned {value} on sample {ids[i]!r}, "
                     f"completion {completion_text(completions[i])[:200]!r}")
                values[i] = 0.0
        return values

    guarded.__name__ = name  # so TRL's reward_func_names and the error counter use the same key
    return guarded
