"""Helpers every reward shares: TRL hands completions as plain strings or as chat messages.

`completion_text` is the one completion -> text step of hs-rl: the rewards, the reward guard's messages and the
trainer's completions log all read a completion through it.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# The tags the prompts ask for and the format rewards check, in the order they must appear.
TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def completion_text(completion: Any) -> str:
    """The text of one completion, whether a string, a message list, or multimodal content parts."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return content_text(completion.get("content"))
    if isinstance(completion, (list, tuple)):
        # Conversational: the assistant's messages (normally exactly one) joined.
        return "".join(completion_text(message) for message in completion
                       if not isinstance(message, dict) or message.get("role", "assistant") == "assistant")
    return str(completion)


def content_text(content: Any) -> str:
    """Join the text parts of a message's content (a string or a list of {"type": "text"} parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return str(content)


def column(kwargs: dict[str, Any], name: str, count: int) -> Sequence[Any]:
    """One dataset column as TRL passes it (a list per batch); missing columns read as Nones."""
    values = kwargs.get(name)
    if values is None:
        return [None] * count
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        return [values] * count
    if len(values) != count:
        raise ValueError(f"reward column {name!r} has {len(values)} values for {count} completions")
    return values
