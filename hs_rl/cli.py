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

from hs_rl.errors import EXIT_CODE, UserError, report
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


# `hs-rl train --help`: hs-rl's own options, then these of TRL's and transformers' (the rest: --help-all)
COMMON_TRL_OPTIONS = (
    "model_name_or_path", "output_dir", "learning_rate", "lr_scheduler_type", "warmup_steps", "max_steps",
    "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps", "num_generations",
    "steps_per_generation", "num_iterations", "beta", "loss_type", "temperature", "max_completion_length",
    "reward_weights", "save_steps", "save_total_limit", "resume_from_checkpoint", "logging_steps", "report_to",
    "seed", "dtype", "bf16", "activation_checkpointing", "use_peft", "lora_r", "lora_alpha", "use_cpu",
)


def _own_fields(types: list[type]) -> list[str]:
    """Field names that hs-rl's own dataclasses declare (not those inherited from TRL or transformers)."""
    import dataclasses

    names: list[str] = []
    for dtype in types:
        for cls in dtype.__mro__:
            if dataclasses.is_dataclass(cls) and cls.__module__.startswith("hs_rl."):
                names += [n for n in cls.__dict__.get("__annotations__", {}) if n not in names]
    return names


def short_help(name: str) -> str:
    """The options a stage is usually set with, not the 250 TRL and transformers define (those: --help-all)."""
    import textwrap

    parser = build_parser(name)
    module = importlib.import_module(COMMANDS[name].module)
    own = _own_fields([getattr(module, n) for n in COMMANDS[name].dataclasses])
    actions = {a.dest: a for a in parser._actions if f"--{a.dest}" in a.option_strings}

    def lines(names) -> list[str]:
        out = []
        for dest in names:
            action = actions.get(dest)
            if action is None:
                continue
            text = " ".join((action.help or "").split()) or "(see --help-all)"
            default = parser.get_default(dest)
            if default not in (None, "", []) and "default" not in text.lower() and len(repr(default)) < 40:
                text += f" (default: {default})"
            out += textwrap.wrap(f"{'--' + dest:<28} {text}", 118, initial_indent="  ", subsequent_indent=" " * 31)
        return out

    head = [f"usage: {usage(name)}", "", COMMANDS[name].help + ": STAGE.yaml's keys (and its `base:` chain), then "
            "the options given here (the same names), last one wins.", "", "hs-rl's options:"]
    tail = ["", "Often set (TRL's and transformers' options):", *lines(COMMON_TRL_OPTIONS), "",
            f"Every option ({len(actions) - 1}): {parser.prog} --help-all"]
    return "\n".join(head + lines(own) + tail)


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


def _did_you_mean(word: str, choices: list[str], spelled: str = "{}") -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {spelled.format(close[0])!r}?" if close else ""


def key_problems(parser: TrlParser, data: dict, origins: dict[str, str], config_path: str) -> list[str]:
    """One line per key of a config (with its bases) that no option has, naming its file and the closest key."""
    valid = sorted(_valid_keys(parser))
    return [f"{origins.get(key, config_path)}: unknown key {key!r}{_did_you_mean(str(key), valid)}"
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
        problems.append(f"{prefix}unknown option --{name}{_did_you_mean(name, names, '--{}')}")
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
# handed to TRL under the new name, in the order given (last one wins as before).
RENAMED = {"gradient_checkpointing": "activation_checkpointing",
           "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs"}


def _renamed_config(parser: TrlParser, config: dict) -> dict:
    dests = _valid_keys(parser)
    if not all(new in dests for new in RENAMED.values()):
        return config
    config = {RENAMED.get(k, k) if RENAMED.get(k) not in config else k: v for k, v in config.items()}
    if config.get("activation_checkpointing") is None:  # the old name's default (TRL: True), under the new name
        config["activation_checkpointing"] = parser.get_default("gradient_checkpointing")
    return config


def _renamed_flags(parser: TrlParser, args: list[str]) -> list[str]:
    if "--activation_checkpointing" not in parser._option_string_actions:
        return args
    out = []
    for word in args:
        flag, eq, value = word.partition("=")
        plain = flag.replace("-", "_")
        if plain == "__no_gradient_checkpointing":
            out += ["--activation_checkpointing", "false"]
        elif plain.startswith("__") and plain[2:] in RENAMED:
            out.append(f"--{RENAMED[plain[2:]]}{eq}{value}")
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
            config, origins = read_config(path), config_origins(path)
            problems += key_problems(self, config, origins, path)
            self.origins = dict(origins)
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
        self.set_defaults_with_config(**_renamed_config(self, config))
        try:
            parsed = super().parse_args_and_config(_renamed_flags(self, args), **kwargs)
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


def quiet_known_noise() -> None:
    """Silence, by their exact text, the dependencies' warnings every run printed though nothing was wrong, so that a
    real warning stands out.

    - transformers 5.23's `logger.info(f"Model config {config}")` builds its text even when info is off, and that
      diffs the config against a default `Qwen2_5OmniTalkerConfig()`, whose own defaults fail transformers' token
      id check (7 "must be `None` or an integer within the vocabulary" lines per process, for every Qwen2.5-Omni,
      the released 7B's included). The check warns once per text: building that default once, quietly, spends
      exactly those seven texts and no other.
    - TRL 1.16 reads the deprecated `is_gradient_checkpointing` property (a FutureWarning per generation).
    """
    import warnings

    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    try:
        from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import Qwen2_5OmniTalkerConfig
    except ImportError:
        return
    config_logger = logging.getLogger("transformers.configuration_utils")
    def mute(record: logging.LogRecord) -> bool:
        return False

    config_logger.addFilter(mute)
    try:
        Qwen2_5OmniTalkerConfig()
    finally:
        config_logger.removeFilter(mute)


MODEL_COMMANDS = ("train", "eval", "demo", "make-tiny-model")  # the commands that load a model's config


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script. A `UserError` is printed as its lines, without a traceback (exit 2)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    listing = "usage: hs-rl COMMAND [ARGS]\n\ncommands:\n" + "\n".join(
        f"  {n:<18} {c.help}" for n, c in COMMANDS.items())
    if not argv or argv[0] in ("-h", "--help"):
        print(listing)
        return 0 if argv else EXIT_CODE
    if argv[0] not in COMMANDS:
        print(f"hs-rl: unknown command {argv[0]!r}{_did_you_mean(argv[0], list(COMMANDS))}\n\n{listing}",
              file=sys.stderr)
        return EXIT_CODE
    name, rest = argv[0], argv[1:]
    command = COMMANDS[name]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every path is local: never reach a hub at run time
    show_our_logs()
    if name == "train" and any(word in ("-h", "--help") for word in rest):
        print(short_help(name))
        return 0
    if "--help-all" in rest:
        build_parser(name).print_help()
        return 0
    if name in MODEL_COMMANDS:
        quiet_known_noise()
    try:
        parsed = parse_command(name, rest)
        function = getattr(importlib.import_module(command.module), command.function)
        return int(function(*parsed) or 0)
    except UserError as err:
        report(err, prefix=f"hs-rl {name}: ")
        return EXIT_CODE


if __name__ == "__main__":
    sys.exit(main())
