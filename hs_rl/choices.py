"""Fixed-choice options are `Literal` types, checked when the options dataclass is built.

TRL's parser turns a `Literal` into argparse choices for the command line, but values from a YAML become
defaults that argparse never checks: a typo such as `over_long_prompts: skp` would silently mean the default.
Every options dataclass with a `Literal` field calls `check_choices(self)` in its `__post_init__`.
"""
from __future__ import annotations

import dataclasses
import difflib
import sys
import typing
from typing import Any, Literal


def literal_values(annotation: Any) -> tuple[Any, ...]:
    """The allowed values of a `Literal[...]` annotation (also inside `X | None`); () for any other type."""
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    return tuple(v for arg in typing.get_args(annotation) for v in literal_values(arg))


def check_choices(options: Any) -> None:
    """Raise a ValueError naming the option, its value, the allowed values and the closest one."""
    for cls in type(options).__mro__:
        own = cls.__dict__.get("__annotations__", {})
        if not own or not dataclasses.is_dataclass(cls) or not cls.__module__.startswith("hs_rl."):
            continue  # hs-rl's own options only: TRL checks its own
        hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
        for name in own:
            allowed = literal_values(hints.get(name))
            value = getattr(options, name, None)
            if allowed and value not in allowed and not (value is None and type(None) in typing.get_args(hints[name])):
                close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}{hint}")


def mapping_option(value: Any, option: str, example: str) -> dict | None:
    """A `{KEY: VALUE}` option as a dict: a YAML mapping, or a YAML/JSON string from the command line; None, '' and
    {} mean unset. Anything else is a UserError naming the option with an example of the form."""
    from hs_rl.errors import UserError

    if value is None or value == "" or value == {}:
        return None
    if isinstance(value, str):
        import yaml

        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            value = "not YAML"
        if value is None:
            return None
    if not isinstance(value, dict):
        raise UserError(f"{option}: expected a mapping, e.g. {example}; got {value!r}")
    return value
