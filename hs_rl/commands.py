"""The `hs-rl` subcommands and the parser that reads their options: the table of commands, config YAMLs with their
`base:` chain, and TRL's parser around them (`ConfigParser`). `hs-rl` itself (hs_rl.cli) and every check that
resolves a stage's options without running it (hs-rl pipeline's, the demo's) parse through here.

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
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from trl import TrlParser

from hs_rl.errors import UserError
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
    "train": Command("hs_rl.train", ("DataArguments", "OmniGRPOConfig", "OmniModelConfig"), "train_command",
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
        raise UserError(f"unexpected arguments {extra} (usage: {usage(name_of(command))})")
    return mapped + rest


def name_of(command: Command) -> str:
    return next(name for name, c in COMMANDS.items() if c is command)


def usage(name: str) -> str:
    """`hs-rl train STAGE.yaml [--option value …]`: the positional words first, as the command takes them."""
    command = COMMANDS[name]
    words = [("STAGE.yaml" if p == "config" else p.upper()) + (" …" if command.variadic_last and i ==
             len(command.positional) - 1 else "") for i, p in enumerate(command.positional)]
    return " ".join(["hs-rl", name, *words, "[--option value …]"])


def build_parser(name: str) -> ConfigParser:
    """The parser of one subcommand, built from the dataclasses its module declares."""
    command = COMMANDS[name]
    module = importlib.import_module(command.module)
    types = [getattr(module, n) for n in command.dataclasses]
    return ConfigParser(types, prog=f"hs-rl {name}", description=command.help, usage=usage(name))


BASE_KEY = "base"
COMMAND_LINE = "the command line"  # where an option given as --KEY VALUE came from, in messages


def _config_layers(config_path: str | Path, _seen: tuple[Path, ...] = (),
                   named_by: tuple[Path, str] | None = None) -> list[tuple[Path, dict]]:
    """A config YAML and its `base:` chain as (file, its own keys), the deepest base first. `named_by`: the YAML
    whose `base:` names this one, and the value written there."""
    path = Path(config_path)
    if not path.is_file():
        if named_by is not None:
            raise UserError(f"{named_by[0]}: `base: {named_by[1]}` names {path}, which does not exist (a relative "
                            f"base is relative to the YAML that names it)")
        raise UserError(f"config file {str(config_path)!r} does not exist")
    if path.resolve() in _seen:
        raise UserError(f"{path}: `base:` chain loops back to itself ({' -> '.join(map(str, _seen))})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(data, dict):
        raise UserError(f"{config_path} must hold a YAML mapping of option: value")
    if isinstance(data.get("reward_funcs"), list):
        data["reward_funcs"] = specs_relative_to(data["reward_funcs"], path.parent)
    base = data.pop(BASE_KEY, None)
    own = [(path, data)]
    if base is None:
        return own
    base_path = Path(base) if Path(base).is_absolute() else path.parent / base
    return _config_layers(base_path, (*_seen, path.resolve()), named_by=(path, str(base))) + own


def read_config(config_path: str | Path) -> dict:
    """A config YAML as one mapping: its `base:` chain first, its own keys over them (whole values, not merged).

    Safe loader; relative `base:` paths and reward files resolve against the YAML that names them.
    """
    merged: dict = {}
    for _, data in _config_layers(config_path):
        merged.update(data)
    return merged


def config_origins(config_path: str | Path) -> dict[str, str]:
    """Which file of the `base:` chain gives each key its value (for messages that say where a value came from)."""
    origins: dict[str, str] = {}
    for path, data in _config_layers(config_path):
        origins.update(dict.fromkeys(data, str(path)))
    return origins


def _valid_keys(parser: TrlParser) -> set[str]:
    return {action.dest for action in parser._actions} | {"env"}


def did_you_mean(word: str, choices: list[str], spelled: str = "{}") -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {spelled.format(close[0])!r}?" if close else ""


def key_problems(parser: TrlParser, data: dict, origins: dict[str, str], config_path: str) -> list[str]:
    """One line per key of a config (with its bases) that no option has, naming its file and the closest key."""
    valid = sorted(_valid_keys(parser))
    return [f"{origins.get(key, config_path)}: unknown key {key!r}{did_you_mean(str(key), valid)}"
            for key in data if key not in valid]


def check_config_keys(parser: TrlParser, config_path: str) -> dict:
    """The config YAML with its bases (`read_config`), refused if a key no option has, naming the closest."""
    data = read_config(config_path)
    problems = key_problems(parser, data, config_origins(config_path), config_path)
    if problems:
        raise UserError(problems)
    return data


def flag_problems(parser: TrlParser, args: list[str], origins: dict[str, str] | None = None) -> list[str]:
    """One line per `--flag` no option has (argparse's prefix matching is not relied on), with the closest one."""
    known = parser._option_string_actions
    names = sorted(s[2:] for s in known if s.startswith("--") and "-" not in s[2:])
    problems = []
    for word in args:
        if not word.startswith("--") or word.split("=", 1)[0] in known:
            continue
        name = word[2:].split("=", 1)[0]
        where = (origins or {}).get(name)
        prefix = f"{where}: " if where else ""
        problems.append(f"{prefix}unknown option --{name}{did_you_mean(name, names, '--{}')}")
    return problems


def _known_flags(parser: TrlParser, args: list[str]) -> list[str]:
    """`args` without the unknown `--flags` and the values that follow them."""
    known, out, skipping = parser._option_string_actions, [], False
    for word in args:
        if word.startswith("--"):
            skipping = word.split("=", 1)[0] not in known
        if not skipping:
            out.append(word)
    return out


# transformers 5.23 renamed gradient_checkpointing to activation_checkpointing; TRL's configs still default the old
# name to True, so every run warned (FutureWarning) although nobody had written it. Both spellings are accepted and
# handed to TRL under the new name, in the order given (last one wins as before). A transformers from before the
# rename (5.20) has only the old name: there the new spelling is handed over under the old one.
RENAMED = {"gradient_checkpointing": "activation_checkpointing",
           "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs"}
EARLIER_NAMES = {new: old for old, new in RENAMED.items()}


def _renamed_config(parser: TrlParser, config: dict) -> dict:
    dests = _valid_keys(parser)
    if not all(new in dests for new in RENAMED.values()):
        if all(old in dests for old in RENAMED):
            return {EARLIER_NAMES.get(k, k) if EARLIER_NAMES.get(k) not in config else k: v for k, v in config.items()}
        return config
    config = {RENAMED.get(k, k) if RENAMED.get(k) not in config else k: v for k, v in config.items()}
    if config.get("activation_checkpointing") is None:  # the old name's default (TRL: True), under the new name
        config["activation_checkpointing"] = parser.get_default("gradient_checkpointing")
    return config


def _renamed_flags(parser: TrlParser, args: list[str]) -> list[str]:
    if "--activation_checkpointing" in parser._option_string_actions:
        names = RENAMED
    elif "--gradient_checkpointing" in parser._option_string_actions:  # before the rename (transformers 5.20)
        names = EARLIER_NAMES
    else:
        return args
    option = "--" + next(iter(names.values()))  # this release's name of the checkpointing switch
    out = []
    for word in args:
        flag, eq, value = word.partition("=")
        plain = flag.replace("-", "_")
        if plain in ("__no_gradient_checkpointing", "__no_activation_checkpointing"):
            out += [option, "false"]
        elif plain.startswith("__") and plain[2:] in names:
            out.append(f"--{names[plain[2:]]}{eq}{value}")
        else:
            out.append(word)
    return out


class ConfigParser(TrlParser):
    """TRL's parser, reading a `--config` YAML through `read_config` (its `base:` chain merged) before TRL sets the
    YAML's values as defaults and parses the command line over them. Every unknown YAML key and `--flag` of one
    call is reported at once (a `UserError`, with the closest valid name); a bad value is a `UserError` too."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.apply_env = True  # a config's `env:` goes to os.environ (off for a check that runs nothing)
        self.flag_origins: dict[str, str] = {}  # option -> where its --flag came from (the pipeline's --override)
        self.origins: dict[str, str] = {}  # after a parse: option -> the file (or COMMAND_LINE) that set it
        self.lenient = False  # unknown keys and flags are left out (and kept in `problems`) instead of raised
        self.problems: list[str] = []

    def error(self, message: str):
        """argparse's errors (a value of the wrong type, a missing value): one line, not the whole usage."""
        raise UserError(f"{message} ({self.prog} --help lists the options)")

    def parse_args_and_config(self, args=None, **kwargs) -> tuple:
        args = list(sys.argv[1:] if args is None else args)
        config: dict = {}
        problems: list[str] = []
        path = None
        if "--config" in args:
            at = args.index("--config")
            path = args[at + 1]
            args = args[:at] + args[at + 2:]
            # either spelling of the checkpointing switch is this release's option (before the unknown-key check)
            config, origins = _renamed_config(self, read_config(path)), config_origins(path)
            problems += key_problems(self, config, origins, path)
            self.origins = dict(origins)
        args = _renamed_flags(self, args)  # before the check: either spelling is known under this release's name
        problems += flag_problems(self, args, self.flag_origins)
        if problems and not self.lenient:
            raise UserError(problems)
        if problems:  # lenient: parse what is known, so that the checks after this one still run
            self.problems = problems
            config = {k: v for k, v in config.items() if k in _valid_keys(self)}
            args = _known_flags(self, args)
        for word in args:
            if word.startswith("--"):
                name = word[2:].split("=", 1)[0].replace("-", "_")
                self.origins[name] = self.flag_origins.get(name, COMMAND_LINE)
        env = config.pop("env", None) or {}
        if self.apply_env:
            for key, value in env.items():  # as TRL's parser does for a config's env:
                os.environ[key] = str(value)
        self.set_defaults_with_config(**_renamed_config(self, config))  # again: no --config sets the default too
        try:
            parsed = super().parse_args_and_config(args, **kwargs)
        except UserError:
            raise
        except ValueError as err:  # an options dataclass refused a value (__post_init__: ours, TRL's, transformers')
            raise UserError(f"{path}: {err}" if path else str(err)) from None
        self._check_reward_weights(parsed)
        return parsed

    def _check_reward_weights(self, parsed: tuple) -> None:
        """One weight per reward, before anything loads, saying where each list came from."""
        from hs_rl.rewards.registry import check_reward_weights

        for options in parsed:
            if hasattr(options, "reward_weights") and hasattr(options, "reward_funcs"):
                check_reward_weights(options.reward_funcs, options.reward_weights,
                                     funcs_from=self.origins.get("reward_funcs", "the default"),
                                     weights_from=self.origins.get("reward_weights", "the default"))


def parse_command(name: str, argv: list[str]) -> tuple:
    """The dataclasses of one subcommand from its words: config YAML (with bases) first, then the options."""
    return build_parser(name).parse_args_and_config(_map_positionals(COMMANDS[name], argv))


def parse_for_check(name: str, argv: list[str], flag_origins: dict[str, str] | None = None) -> tuple[tuple, list[str]]:
    """`parse_command` for a check that runs nothing: (the dataclasses, the unknown keys and flags, which were left
    out so that the other checks can still run). A config's `env:` is not applied to this process. A bad value is
    still raised (a UserError)."""
    parser = build_parser(name)
    parser.apply_env = False
    parser.lenient = True
    parser.flag_origins = dict(flag_origins or {})
    parsed = parser.parse_args_and_config(_map_positionals(COMMANDS[name], argv))
    return parsed, parser.problems
