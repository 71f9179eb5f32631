"""The reward registry and the resolver of reward specs, so a stage YAML can name built-in or user rewards.

A spec is a registered name (`REGISTRY`), ``module:function`` or ``file.py:function``.

Settings, one rule for every spec: a spec without settings names the reward itself, a function TRL calls as
``fn(completions=…, **columns)``; a spec given settings (a stage's ``reward_kwargs: {KEY: {…}}``, KEY from
`settings_key`) names a FACTORY, called once as ``factory(**settings)``, that returns the reward. A registered
name's factory is its entry in `FACTORIES` (``think_length`` -> `make_think_length_reward`); a module or file
spec's factory is the function it names (``extra.py:make_brevity`` with ``{make_brevity: {max_chars: 200}}``).
Both mistakes are refused when the spec resolves (before any weight loads): settings for a reward function (it
takes `completions`, or is registered without a factory), and a factory named without settings (it cannot take
`completions`).
"""
from __future__ import annotations

import difflib
import functools
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from .accuracy import accuracy_reward, strict_accuracy_reward
from .format import answer_format_reward, format_reward
from .format_partial import format_partial_reward
from .think_length import make_think_length_reward, think_length_reward

# The built-in rewards by the names a stage YAML gives them.
REGISTRY: dict[str, Callable[..., list]] = {
    "accuracy": accuracy_reward,
    "accuracy_strict": strict_accuracy_reward,
    "format": format_reward,
    "answer_format": answer_format_reward,
    "format_partial": format_partial_reward,
    "think_length": think_length_reward,
}
# Registered rewards that take settings: name -> the factory `reward_kwargs[name]` is passed to.
FACTORIES: dict[str, Callable[..., Callable[..., list]]] = {
    "think_length": make_think_length_reward,
}

# Module specs written against the folder's name (``rewards.format:format_reward``) mean the built-ins.
_BUILTIN_PREFIX = "rewards."


def registered_names() -> list[str]:
    """The names `get_reward` accepts without a colon."""
    return sorted(REGISTRY)


def _unknown_name(spec: str) -> ValueError:
    """An error naming the spec, the registered names and the closest one."""
    names = registered_names()
    close = difflib.get_close_matches(spec, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"unknown reward {spec!r}.{hint} Registered rewards: {', '.join(names)}. "
                      "Or give 'package.module:function' or 'path/to/file.py:function'.")


def is_file_spec(spec: str) -> bool:
    """Whether a ``target:function`` spec names a Python file (so a config may resolve it against its folder)."""
    target = spec.rpartition(":")[0]
    return bool(target) and _is_file_spec(target)


def specs_relative_to(specs: list, folder: str | os.PathLike[str]) -> list:
    """Reward specs as a config file in `folder` means them: a relative ``file.py:function`` whose file is in
    `folder` becomes absolute; every other spec is left as written (a file not there resolves later, against
    the current directory)."""
    resolved = []
    for spec in specs:
        if isinstance(spec, str) and is_file_spec(spec.strip()):
            target, _, function = spec.strip().rpartition(":")
            if not Path(target).is_absolute() and (Path(folder) / target).is_file():
                spec = f"{(Path(folder) / target).resolve()}:{function}"
        resolved.append(spec)
    return resolved


def _is_file_spec(target: str) -> bool:
    """A target naming a file (ends in .py or holds a path separator) rather than a module."""
    return target.endswith(".py") or "/" in target or os.sep in target


def _load_file(spec: str, target: str, base_dir: str | os.PathLike[str] | None) -> ModuleType:
    """Import a Python file by path: absolute, else relative to the CWD, else to base_dir."""
    candidates = [Path(target)] if Path(target).is_absolute() else [Path.cwd() / target]
    if not Path(target).is_absolute() and base_dir is not None:
        candidates.append(Path(base_dir) / target)
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        tried = ", ".join(str(p) for p in candidates)
        raise FileNotFoundError(f"reward {spec!r}: file {target!r} not found (tried {tried})")
    path = path.resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"hs_rl_user_reward_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"reward {spec!r}: cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # registered so that pickling the function (e.g. to workers) works
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _named(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """Guarantee a `__name__` (TRL logs each reward under it), wrapping callables that lack one."""
    if isinstance(getattr(fn, "__name__", None), str):
        return fn

    @functools.wraps(fn, assigned=("__doc__",))
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    wrapper.__name__ = wrapper.__qualname__ = name
    return wrapper


def _parameters(fn: Callable[..., Any]) -> inspect.Signature | None:
    """`fn`'s signature, or None where Python cannot tell (some builtins): then nothing is checked."""
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _as_reward(spec: str, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """A spec given no settings names the reward: it must take `completions` (TRL passes it by name)."""
    signature = _parameters(fn)
    if signature is not None:
        try:
            signature.bind_partial(completions=[])
        except TypeError:
            raise TypeError(f"reward {spec!r}: {name}{signature} cannot take `completions`, so it is no reward "
                            f"(a reward is fn(completions, **columns)); if it is a factory that builds one, give "
                            f"its settings: reward_kwargs: {{{name}: {{...}}}}") from None
    return _named(fn, name)


def _with_settings(spec: str, fn: Callable[..., Any], settings: Mapping[str, Any]) -> Callable[..., Any]:
    """The reward a factory builds from a stage's settings (a clear error when the call does not fit)."""
    signature = _parameters(fn)
    if signature is not None and "completions" in signature.parameters:
        raise ValueError(f"reward {spec!r} takes no settings: {getattr(fn, '__name__', fn)} takes `completions`, "
                         f"so it is the reward itself, and reward_kwargs {dict(settings)} would be passed to a "
                         "factory: a function of the settings that returns the reward (e.g. make_brevity(max_chars) "
                         "returning brevity); name that factory in reward_funcs, or drop the settings")
    try:
        reward = fn(**settings)
    except (TypeError, ValueError) as err:
        raise type(err)(f"reward {spec!r}: settings {dict(settings)} do not fit {getattr(fn, '__name__', fn)}: "
                        f"{err}") from err
    if not callable(reward):
        raise TypeError(f"reward {spec!r} with settings: {getattr(fn, '__name__', fn)} returned "
                        f"{type(reward).__name__}, not a reward function (a spec with settings names a factory)")
    return _named(reward, spec.rpartition(":")[2])


def _registered(spec: str, settings: Mapping[str, Any] | None) -> Callable[..., Any]:
    """A built-in reward by name, built by its factory when the stage gives it settings."""
    if spec not in REGISTRY:
        raise _unknown_name(spec)
    if not settings:
        return REGISTRY[spec]
    if spec not in FACTORIES:
        raise ValueError(f"reward {spec!r} takes no settings (rewards with settings: {', '.join(sorted(FACTORIES))})")
    return _with_settings(spec, FACTORIES[spec], settings)


def get_reward(spec: str | Callable[..., Any], base_dir: str | os.PathLike[str] | None = None,
               settings: Mapping[str, Any] | None = None) -> Callable[..., Any]:
    """The reward function a spec names.

    ``spec`` is one of: a registered name (see `hs_rl.rewards.REGISTRY`, e.g. ``"accuracy"``);
    ``"package.module:function"`` (``rewards.X`` means the built-in ``hs_rl.rewards.X``); or
    ``"path/to/file.py:function"`` (relative paths resolve against the current directory, then ``base_dir``;
    a stage YAML makes them absolute against its own folder first). A callable is returned as is.
    ``settings`` make the spec name a factory that builds the reward (the module docstring's rule). Module and file
    specs IMPORT AND RUN the user's code: only use specs you trust.
    """
    if callable(spec):
        return _named(spec, type(spec).__name__)
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"reward spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    if ":" not in spec:
        return _registered(spec, settings)
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise ValueError(f"reward {spec!r}: expected 'module:function' or 'file.py:function'")
    if _is_file_spec(target):
        module = _load_file(spec, target, base_dir)
    else:
        if target.startswith(_BUILTIN_PREFIX):
            target = f"{__package__}.{target[len(_BUILTIN_PREFIX):]}"
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as err:
            raise ModuleNotFoundError(f"reward {spec!r}: cannot import module {target!r} ({err})") from err
    fn = getattr(module, attr, None)
    if fn is None:
        available = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        close = difflib.get_close_matches(attr, available, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise AttributeError(f"reward {spec!r}: {target!r} has no {attr!r}.{hint} "
                             f"Callables there: {', '.join(available) or '(none)'}")
    if not callable(fn):
        raise TypeError(f"reward {spec!r}: {attr!r} is a {type(fn).__name__}, not a function")
    return _with_settings(spec, fn, settings) if settings else _as_reward(spec, fn, attr)


def settings_key(spec: str | Callable[..., Any]) -> str:
    """The `reward_kwargs` key of a spec: a registered name as is, else the function name after the colon."""
    if callable(spec):
        return getattr(spec, "__name__", type(spec).__name__)
    return spec.strip().rpartition(":")[2]


def get_rewards(specs: Sequence[str | Callable[..., Any]], base_dir: str | os.PathLike[str] | None = None,
                settings: Mapping[str, Mapping[str, Any]] | None = None) -> list[Callable[..., Any]]:
    """Resolve several specs in order (a single string is treated as one spec).

    ``settings`` maps a reward's key (`settings_key`: ``think_length``, or ``make_brevity`` for
    ``extra.py:make_brevity``) to the keyword arguments its factory takes; a key no spec has is an error.
    """
    if isinstance(specs, str):
        specs = [specs]
    settings = dict(settings or {})
    keys = [settings_key(spec) for spec in specs]
    unused = sorted(set(settings) - set(keys))
    if unused:
        raise ValueError(f"reward_kwargs names {unused}, which reward_funcs does not have (keys: a registered "
                         f"name or the function of a 'module:function' spec; reward_funcs gives {keys})")
    for key, value in settings.items():
        if not isinstance(value, Mapping):
            raise ValueError(f"reward_kwargs[{key!r}] must be a mapping of setting: value, got {value!r}")
    return [get_reward(spec, base_dir=base_dir, settings=settings.get(key)) for spec, key in zip(specs, keys)]


def check_reward_weights(specs: Sequence[Any], weights: Sequence[float] | None, funcs_from: str = "the config",
                         weights_from: str = "the config") -> None:
    """One weight per reward, refused before anything loads, saying where each list was set (a stage that swaps
    its rewards keeps the base YAML's weights unless it gives its own)."""
    if weights is None or len(weights) == len(specs):
        return
    from hs_rl.errors import UserError

    example = " ".join(["1.0"] * len(specs))
    raise UserError(f"reward_weights has {len(weights)} entries (from {weights_from}) for {len(specs)} rewards "
                    f"(reward_funcs {list(specs)}, from {funcs_from}): give one weight per reward next to "
                    f"reward_funcs, e.g. --reward_weights {example}")
