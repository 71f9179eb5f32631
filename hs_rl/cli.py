"""The `hs-rl` command: one subcommand per capability (the table and the parser: hs_rl.commands).

`hs-rl train --help` lists hs-rl's own options and the TRL options a stage usually sets; `--help-all` every one.
"""
from __future__ import annotations

import importlib
import os
import sys

from hs_rl.commands import COMMANDS, EARLIER_NAMES, build_parser, did_you_mean, parse_command, usage
from hs_rl.errors import EXIT_CODE, UserError, report
from hs_rl.logs import quiet_known_noise, show_our_logs

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
        for name in names:  # a transformers from before a rename lists the option under its own name
            action = actions.get(name) or actions.get(EARLIER_NAMES.get(name, ""))
            if action is None:
                continue
            dest = action.dest
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
        print(f"hs-rl: unknown command {argv[0]!r}{did_you_mean(argv[0], list(COMMANDS))}\n\n{listing}",
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
