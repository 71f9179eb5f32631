"""The `hs-rl` command: one subcommand per capability, each parsed by TRL's parser from its own dataclass.

Every subcommand is a pair (arguments dataclass, function) living in the module that owns the capability;
this file only maps names to them, so adding a command never touches the modules' logic.
Leading positional words are mapped onto named fields (``hs-rl convert IN OUT`` is
``--input IN --output OUT``) so that TRL's parser stays the single source of truth for every option.

A config YAML (``--config``, the stage YAML of `hs-rl train`) may name another as ``base: FILE`` (relative to
itself). A key resolves, last one wins: the base YAML -> the YAML itself -> the command line. `hs-rl pipeline`
passes a stage its settings on that command line, in this order: the stage entry's `options`, its `dataset`, the
input model and output_dir, `--override KEY=VALUE`, `--override STAGE.KEY=VALUE`.
"""
from __future__ import annotations

import difflib
import importlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from trl import TrlParser

from hs_rl.rewards.registry import specs_relative_to


@dataclass(frozen=True)
class Command:
    """Where a subcommand's argument dataclasses and entry function live, and its positional words."""

    module: str
    dataclasses: tuple[str, ...]
    function: str
    help: str
    positional: tuple[str, ...] = ()
    # A trailing positional that takes every remaining leading word (e.g. several result files).
    variadic_last: bool = False


COMMANDS: dict[str, Command] = {
    "train": Command("hs_rl.train", ("DataArguments", "OmniGRPOConfig", "OmniModelConfig"), "run_train",
                     "GRPO-train one stage from a stage YAML", positional=("config",)),
    "pipeline": Command("hs_rl.pipeline", ("PipelineArguments",), "run_pipeline",
                        "run the chained stages of a pipeline YAML", positional=("pipeline",)),
    "status": Command("hs_rl.status", ("StatusArguments",), "run_status",
                      "where a run is: per stage state, step, rewards, ETA, checkpoint, final model",
                      positional=("output_dir",)),
    "demo": Command("hs_rl.tools.demo", ("DemoArguments",), "run_demo",
                    "demo model, media-only curriculum, format warm-up, three GRPO stages, held-out table; CPU"),
    "convert": Command("hs_rl.data.convert", ("ConvertArguments",), "run_convert",
                       "HumanSense JSON -> normalized records JSONL", positional=("input", "output")),
    "validate-data": Command("hs_rl.data.validation", ("ValidateArguments",), "run_validate",
                             "check every record and its media before training", positional=("path",)),
    "make-tiny-model": Command("hs_rl.tools.tiny_model", ("TinyModelArguments",), "run_make_tiny_model",
                               "write a tiny random Qwen2.5-Omni with tokenizer and processor",
                               positional=("output_dir",)),
    "make-sample-data": Command("hs_rl.tools.sample_data", ("SampleDataArguments",), "run_make_sample_data",
                                "write short clips, wavs, a training JSON and benchmark files",
                                positional=("output_dir",)),
    "eval": Command("hs_rl.eval.evaluate", ("EvalArguments",), "run_eval",
                    "answer the HumanSense benchmark with a checkpoint (resumable)"),
    "plot": Command("hs_rl.plots", ("PlotArguments",), "run_plot",
                    "draw each stage's training curves (reward, KL, length, clip ratio) to report/curves.png",
                    positional=("output_dirs",), variadic_last=True),
    "score": Command("hs_rl.eval.scoring", ("ScoreArguments",), "run_score",
                     "score result files: per task, tier, question type; report and plot",
                     positional=("results",), variadic_last=True),
}


def _map_positionals(command: Command, argv: list[str]) -> list[str]:
    """Turn leading positional words into the named options TRL's parser understands."""
    leading: list[str] = []
    while len(leading) < len(argv) and not argv[len(leading)].startswith("-"):
        leading.append(argv[len(leading)])
    rest = argv[len(leading):]
    mapped: list[str] = []
    for i, name in enumerate(command.positional):
        if i >= len(leading):
            break
        last = i == len(command.positional) - 1
        values = leading[i:] if (last and command.variadic_last) else [leading[i]]
        mapped += [f"--{name}", *values]
    extra = leading[len(command.positional):] if not command.variadic_last else []
    if extra:
        raise SystemExit(f"hs-rl: unexpected arguments {extra}")
    return mapped + rest


def build_parser(name: str) -> ConfigParser:
    """The parser of one subcommand, built from the dataclasses its module declares."""
    command = COMMANDS[name]
    module = importlib.import_module(command.module)
    types = [getattr(module, n) for n in command.dataclasses]
    return ConfigParser(types, prog=f"hs-rl {name}", description=command.help)


BASE_KEY = "base"


def read_config(config_path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """A config YAML as one mapping: its `base:` chain first, its own keys over them (whole values, not merged).

    Safe loader; relative `base:` paths and reward files resolve against the YAML that names them.
    """
    path = Path(config_path)
    if not path.is_file():
        raise SystemExit(f"hs-rl: config file {str(config_path)!r} does not exist")
    if path.resolve() in _seen:
        raise SystemExit(f"hs-rl: {path}: `base:` chain loops back to itself ({' -> '.join(map(str, _seen))})")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise SystemExit(f"hs-rl: {config_path} must hold a YAML mapping of option: value")
    if isinstance(data.get("reward_funcs"), list):
        data["reward_funcs"] = specs_relative_to(data["reward_funcs"], path.parent)
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    base_path = Path(base) if Path(base).is_absolute() else path.parent / base
    return {**read_config(base_path, (*_seen, path.resolve())), **data}


def check_config_keys(parser: TrlParser, config_path: str) -> dict:
    """The config YAML with its bases (`read_config`), refused if a key no option has, naming the closest."""
    data = read_config(config_path)
    valid = {action.dest for action in parser._actions} | {"env"}
    for key in data:
        if key not in valid:
            close = difflib.get_close_matches(str(key), sorted(valid), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SystemExit(f"hs-rl: {config_path}: unknown key {key!r}{hint}")
    return data


class ConfigParser(TrlParser):
    """TRL's parser, reading a `--config` YAML through `check_config_keys` (its `base:` chain merged, unknown keys
    refused) before TRL sets the YAML's values as defaults and parses the command line over them."""

    def parse_args_and_config(self, args=None, **kwargs) -> tuple:
        args = list(sys.argv[1:] if args is None else args)
        if "--config" in args:
            at = args.index("--config")
            config = check_config_keys(self, args[at + 1])
            args = args[:at] + args[at + 2:]
            for key, value in (config.pop("env", None) or {}).items():  # as TRL's parser does for a config's env:
                os.environ[key] = str(value)
            self.set_defaults_with_config(**config)
        return super().parse_args_and_config(args, **kwargs)


def parse_command(name: str, argv: list[str]) -> tuple:
    """The dataclasses of one subcommand from its words: config YAML (with bases) first, then the options."""
    return build_parser(name).parse_args_and_config(_map_positionals(COMMANDS[name], argv))


def show_our_logs() -> None:
    """hs_rl's INFO lines on stderr (what a run chose: packed groups or not, the reference's shared tensors, a
    resume's checkpoint), through a handler of its own: a root handler would print again what other libraries
    already print themselves (transformers propagates under CI). Left alone when logging is already set up."""
    ours = logging.getLogger("hs_rl")
    if logging.getLogger().handlers or ours.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    ours.propagate = False


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = [f"  {n:<18} {c.help}" for n, c in COMMANDS.items()]
        print("usage: hs-rl COMMAND [ARGS]\n\ncommands:\n" + "\n".join(lines))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    name, rest = argv[0], argv[1:]
    command = COMMANDS[name]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every path is local: never reach a hub at run time
    show_our_logs()
    parsed = parse_command(name, rest)
    function = getattr(importlib.import_module(command.module), command.function)
    result = function(*parsed)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
