"""`hs-rl pipeline PIPELINE.yaml`: the stages of a pipeline YAML, in order, each from the previous one's model.

A stage runs as its own `hs-rl train` process (optionally under a launcher such as `accelerate launch …` or
`torchrun …`), so memory is returned between stages and a killed run is resumed by running the same command:
a done stage (final model exported and verified, `STAGE_DONE.json` written last) is skipped, an unfinished one
resumes from its newest complete checkpoint (`resume_from_checkpoint: auto`).

While a stage runs, its output goes to `OUTPUT_DIR/NAME/train.log`; the console shows one live progress line per
stage, read from the stage's `progress.json` (hs_rl.progress), and a failed stage's last log lines. The pipeline
writes `OUTPUT_DIR/pipeline.json` (the stages in order) and `STAGE_FAILED.json` in a stage that failed, so that
`hs-rl status OUTPUT_DIR` can tell every stage's state from the files alone.

A stage entry's `replay: {EARLIER_STAGE: FRACTION}` mixes that share of an earlier stage's records into the stage's
own (hs_rl.data.replay): the pipeline passes the earlier stage's dataset, as that stage resolves it, in `replay`.

Overrides: `--override KEY=VALUE` applies to every stage, `--override STAGE.KEY=VALUE` to one; KEY is any
option of `hs-rl train` (a stage YAML key), VALUE is passed on as written (space-separated for lists).

Before stage 1's first step every stage that will train is checked (`check_plan`): its config resolved as the
stage will resolve it (base chain, YAML, pipeline options, overrides: hs_rl.commands), its records and media validated
and its model folder, rewards and modalities checked as the stage does at start (hs_rl.preflight); every problem of
every stage is listed at once and nothing is run. A stage whose input is an earlier stage's model, not trained yet,
has everything but that model checked. `--dry_run` checks the same and runs nothing.

A done stage is skipped; when its settings (stage YAML, options, overrides) differ from those it was trained with,
the pipeline says so and that they were not applied. `--redo STAGE` trains a done stage again: its folder and those
of the stages after it (which start from its model) are moved aside to NAME.before-redo-TIME first.
"""
from __future__ import annotations

import difflib
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hs_rl.atomic_files import atomic_write, read_json_dict
from hs_rl.errors import ERROR_FILE_ENV, UserError
from hs_rl.omni.export import FINAL_DIR, is_exported
from hs_rl.progress import StageConsole, write_json_atomic
from hs_rl.rewards.registry import specs_relative_to
from hs_rl.stage_log import tail as log_tail

logger = logging.getLogger(__name__)

DONE = "STAGE_DONE.json"
FAILED = "STAGE_FAILED.json"  # the stage's last run under the pipeline exited non-zero (removed when it restarts)
PIPELINE_RECORD = "pipeline.json"  # OUTPUT_DIR/pipeline.json: the stage names in order, for `hs-rl status`
LOG = "train.log"
USER_ERROR = "user_error.txt"  # a stage's UserError, written by the stage itself (hs_rl.errors.ERROR_FILE_ENV)


@dataclass
class PipelineArguments:
    """Options of `hs-rl pipeline PIPELINE.yaml`."""

    pipeline: str = field(default=None, metadata={"help": "Pipeline YAML listing the stages in order."})
    output_dir: str | None = field(default=None, metadata={
        "help": "Root of the run (each stage writes OUTPUT_DIR/NAME); default: the pipeline's output_dir."})
    model_name_or_path: str | None = field(default=None, metadata={
        "help": "Model the first stage starts from; default: the pipeline's model_name_or_path."})
    from_stage: str | None = field(default=None, metadata={
        "help": "Start at this stage; the stage before it must be done (its final model is the input)."})
    only: str | None = field(default=None, metadata={"help": "Run this stage alone (same input rule)."})
    override: list[str] = field(default_factory=list, metadata={
        # "extend": `--override A=1 --override B=2` keeps both (argparse's default kept only the last, silently)
        "action": "extend",
        "help": "KEY=VALUE for every stage or STAGE.KEY=VALUE for one, e.g. stage1_video.max_steps=3."})
    launcher: str | None = field(default=None, metadata={
        "help": "Command a stage runs under, e.g. 'accelerate launch --config_file launch/accelerate/zero3.yaml' or "
                "'torchrun --nproc_per_node 8'; default: the pipeline's launcher, else this Python."})
    dry_run: bool = field(default=False, metadata={
        "help": "Check every stage (config, data, media, model) and print its command, without running anything."})
    redo: list[str] = field(default_factory=list, metadata={
        "action": "extend",
        "help": "Train this done stage again, with today's settings: its folder and the later stages' (they start "
                "from its model) are moved aside to NAME.before-redo-TIME first. To resume a redo that stopped, run "
                "without --redo."})
    progress_interval: float = field(default=30.0, metadata={
        "help": "Seconds between plain progress lines when the console is not a terminal (a terminal gets a live "
                "bar); 0 prints every step."})


@dataclass
class StageSpec:
    """One entry of a pipeline YAML's `stages:` list."""

    name: str
    config: str
    dataset: str | None = None
    eval: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    replay: dict[str, float] | None = None  # earlier stage name (or records file) -> fraction (hs_rl.data.replay)


@dataclass
class PipelineSpec:
    """A pipeline YAML: where it writes, what the first stage starts from, and the stages in order."""

    stages: list[StageSpec]
    output_dir: str = "experiments/pipeline"
    model_name_or_path: str | None = None
    launcher: str | None = None


def load_pipeline(path: str | Path) -> PipelineSpec:
    """Read a pipeline YAML (safe loading); stage config paths are relative to the pipeline file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"pipeline YAML {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(data, dict) or not isinstance(data.get("stages"), list) or not data["stages"]:
        raise UserError(f"{path}: expected a mapping with a non-empty `stages:` list")
    unknown = set(data) - {"stages", "output_dir", "model_name_or_path", "launcher"}
    if unknown:
        raise UserError(f"{path}: unknown key(s) {sorted(unknown)} (keys: stages, output_dir, model_name_or_path, "
                        f"launcher)")
    stages = []
    for i, entry in enumerate(data["stages"]):
        if not isinstance(entry, dict) or "name" not in entry or "config" not in entry:
            raise UserError(f"{path}: stage {i} needs at least `name:` and `config:`")
        bad = set(entry) - {"name", "config", "dataset", "eval", "options", "replay"}
        if bad:
            raise UserError(f"{path}: stage {entry['name']!r} has unknown key(s) {sorted(bad)} (keys: name, config, "
                            f"dataset, eval, options, replay)")
        config = Path(entry["config"])
        config = config if config.is_absolute() else path.parent / config
        if not config.is_file():
            raise UserError(f"{path}: stage {entry['name']!r}: config {config} does not exist")
        options = dict(entry.get("options") or {})
        if isinstance(options.get("reward_funcs"), list):  # reward files beside the pipeline YAML, as in a stage's
            options["reward_funcs"] = specs_relative_to(options["reward_funcs"], path.parent)
        stages.append(StageSpec(name=str(entry["name"]), config=str(config), dataset=entry.get("dataset"),
                                eval=entry.get("eval"), options=options, replay=_stage_replay(path, entry)))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise UserError(f"{path}: stage names repeat: {names}")
    _check_replay_names(path, stages)
    return PipelineSpec(stages=stages, **{k: data[k] for k in ("output_dir", "model_name_or_path", "launcher")
                                           if data.get(k) is not None})


def _stage_replay(path: Path, entry: dict) -> dict[str, float] | None:
    """A stage entry's `replay:` mapping, its fractions checked (hs_rl.data.replay.parse_replay)."""
    from hs_rl.data.replay import parse_replay

    if entry.get("replay") is None:
        return None
    try:
        return parse_replay(entry["replay"] if isinstance(entry["replay"], dict) else str(entry["replay"]))
    except UserError as err:
        raise UserError([f"{path}: stage {entry['name']!r}: {line}" for line in err.problems]) from None


def _check_replay_names(path: Path, stages: list[StageSpec]) -> None:
    """Each `replay:` source is an EARLIER stage's name, or an existing records file."""
    names = [s.name for s in stages]
    problems = []
    for index, stage in enumerate(stages):
        for source in stage.replay or {}:
            if source in names and names.index(source) >= index:
                problems.append(f"{path}: stage {stage.name!r}: replay: {source!r} is not an earlier stage (replay "
                                f"mixes in the records of stages that ran before this one)")
            elif source not in names and not Path(source).is_file():
                close = difflib.get_close_matches(source, names[:index], n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problems.append(f"{path}: stage {stage.name!r}: replay: {source!r} is neither an earlier stage "
                                f"({', '.join(names[:index]) or 'none'}) nor a records file{hint}")
    if problems:
        raise UserError(problems)


def _stage_dataset(spec: PipelineSpec, index: int, overrides: dict[str | None, dict[str, str]]) -> str | None:
    """The dataset stage `index` trains on, as its run would resolve it (override, pipeline entry, its YAML)."""
    from hs_rl.commands import read_config

    stage = spec.stages[index]
    for scope in (stage.name, None):
        if "dataset" in overrides.get(scope, {}):
            return overrides[scope]["dataset"]
    if stage.dataset or stage.options.get("dataset"):
        return stage.dataset or stage.options["dataset"]
    try:
        return read_config(stage.config).get("dataset")
    except UserError:
        return None


def _no_stage(value: str, names: list[str]) -> str:
    close = difflib.get_close_matches(value, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"no stage named {value!r}{hint} (stages: {', '.join(names)})"


def parse_overrides(items: list[str], names: list[str]) -> dict[str | None, dict[str, str]]:
    """`KEY=VALUE` → {None: {KEY: VALUE}} (all stages); `STAGE.KEY=VALUE` → {STAGE: {KEY: VALUE}}.

    Every malformed item and unknown stage name is reported at once (a UserError).
    """
    parsed: dict[str | None, dict[str, str]] = {}
    problems = []
    for item in items or []:
        if "=" not in item:
            problems.append(f"--override {item!r}: expected KEY=VALUE or STAGE.KEY=VALUE")
            continue
        key, value = item.split("=", 1)
        stage, _, option = key.rpartition(".")
        if stage and stage not in names:
            problems.append(f"--override {item!r}: {_no_stage(stage, names)}")
            continue
        parsed.setdefault(stage or None, {})[option] = value
    if problems:
        raise UserError(problems)
    return parsed


def _arg_value(value: Any) -> list[str]:
    """A YAML or override value as command-line words for TRL's parser."""
    if isinstance(value, bool):
        return [str(value).lower()]
    if isinstance(value, dict):  # e.g. reward_kwargs: one JSON word (a YAML mapping the option parses)
        return [json.dumps(value)]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    if isinstance(value, str):
        return shlex.split(value) or [""]
    return [str(value)]


def stage_command(launcher: list[str], stage: StageSpec, options: dict[str, Any]) -> list[str]:
    """The `hs-rl train` command of one stage: its YAML plus the pipeline's options, last one wins."""
    words = [*launcher, "-m", "hs_rl.train", stage.config]
    for key, value in options.items():
        words += [f"--{key}", *_arg_value(value)]
    return words


def select_stages(spec: PipelineSpec, from_stage: str | None, only: str | None) -> list[int]:
    """Indices of the stages to run."""
    names = [s.name for s in spec.stages]
    for flag, value in (("--from_stage", from_stage), ("--only", only)):
        if value is not None and value not in names:
            raise UserError(f"{flag} {value}: {_no_stage(value, names)}")
    if only is not None:
        return [names.index(only)]
    return list(range(names.index(from_stage) if from_stage else 0, len(names)))


def is_done(stage_dir: Path) -> bool:
    """A stage is done once its final model is exported, verified, and the done marker written after that."""
    return (stage_dir / DONE).is_file() and is_exported(stage_dir / FINAL_DIR)


def mark_done(stage_dir: Path, stage: StageSpec, model_in: str, settings: dict[str, Any] | None = None) -> None:
    """Write the done marker (last, fsynced) with what the stage read and produced, and the settings it was trained
    with (`stage_settings`: a later run with other settings says they were not applied)."""
    history_file = stage_dir / "log_history.json"
    history = json.loads(history_file.read_text()) if history_file.is_file() else []
    atomic_write(stage_dir / DONE, json.dumps({
        "stage": stage.name, "input_model": model_in, "final_model": str(stage_dir / FINAL_DIR),
        "steps": max((h.get("step", 0) for h in history), default=0), "time": time.time(),
        "settings": settings,
    }, indent=2, default=str) + "\n")


def stage_settings(stage: StageSpec, options: dict[str, Any], chained: bool = False) -> dict[str, Any]:
    """What decides how a stage trains, as JSON: its stage YAML (with its base chain) and the options the pipeline
    passes over it; not output_dir, nor (`chained`) the input model that is the previous stage's final/ (both
    follow the run's folder, which may be moved)."""
    from hs_rl.commands import read_config

    try:
        config = read_config(stage.config)
    except UserError:
        config = {}
    left_out = {"output_dir", "model_name_or_path"} if chained else {"output_dir"}
    passed = {k: (" ".join(_arg_value(v))) for k, v in options.items() if k not in left_out}
    return json.loads(json.dumps({"config": config, "options": passed}, default=str))


def changed_settings(stage_dir: Path, now: dict[str, Any]) -> list[str] | None:
    """The keys whose value differs from those the done stage was trained with (None: its marker does not say)."""
    before = (read_json_dict(stage_dir / DONE) or {}).get("settings")
    if not isinstance(before, dict):
        return None
    merged_before = {**before.get("config", {}), **before.get("options", {})}
    merged_now = {**now["config"], **now["options"]}
    return sorted(k for k in set(merged_before) | set(merged_now)
                  if str(merged_before.get(k)) != str(merged_now.get(k)))


def _launcher_words(args: PipelineArguments, spec: PipelineSpec) -> list[str]:
    """The launcher as words; the default is this interpreter, so a venv's hs_rl is the one that runs."""
    launcher = args.launcher or spec.launcher
    return shlex.split(launcher) if launcher else [sys.executable]


def run_stage_eval(stage: StageSpec, stage_dir: Path, root: Path, evaluated: list[tuple[str, Path]]) -> None:
    """Evaluate a done stage's final model if the stage names an eval set, then refresh the running report."""
    if not stage.eval:
        return
    try:
        from hs_rl.eval.evaluate import EvalArguments, evaluate
    except ImportError:  # evaluation is optional; training results stand on their own
        logger.warning("stage %s names an eval set but hs_rl.eval.evaluate is not available", stage.name)
        return
    options = dict(stage.eval)
    # named by the stage, so that the report's columns (and a later `hs-rl score run/*/eval/*.jsonl`) read as stages
    options.setdefault("out", str(stage_dir / "eval" / f"{stage.name}.jsonl"))
    options.setdefault("label", stage.name)
    data = options.get("data")
    options["data"] = [data] if isinstance(data, str) else list(data or [])
    out = evaluate(EvalArguments(model=str(stage_dir / FINAL_DIR), **options))
    evaluated.append((stage.name, Path(out)))
    from hs_rl.eval.scoring import ScoreArguments, run_score

    run_score(ScoreArguments(results=[str(p) for _, p in evaluated], out=str(root / "report"),
                             labels=[name for name, _ in evaluated]))


def run_stage_process(name: str, command: list[str], stage_dir: Path, interval: float) -> int:
    """Run one stage with its output in `train.log`, showing its progress line until it exits."""
    from hs_rl.stage_log import UNDER_PIPELINE_ENV

    (stage_dir / FAILED).unlink(missing_ok=True)
    (stage_dir / USER_ERROR).unlink(missing_ok=True)
    console = StageConsole(name, stage_dir, interval=interval)
    # the stage logs to train.log through us (not a capture of its own); a UserError it meets is written to a file
    env = {**os.environ, UNDER_PIPELINE_ENV: "1", ERROR_FILE_ENV: str(stage_dir / USER_ERROR)}
    with open(stage_dir / LOG, "a", encoding="utf-8") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            while process.poll() is None:
                console.poll()
                time.sleep(0.5)
        except BaseException:  # Ctrl-C reaches the stage too (same process group): let it stop, then stop
            process.wait()
            console.close()
            raise
    console.close()
    return process.returncode


def report_failure(name: str, stage_dir: Path, code: int, reason: str | None = None, redo: bool = False) -> None:
    """Say where a failed stage's log is, show its last lines, and leave STAGE_FAILED.json for `hs-rl status`.

    A stage that stopped at a user error (a setting, a path, its data: it wrote USER_ERROR) is not advised to be
    run again as it is: the error says what to fix.
    """
    log = stage_dir / LOG
    tail = log_tail(log)
    user_error = (stage_dir / USER_ERROR).read_text(encoding="utf-8").strip() if (stage_dir / USER_ERROR).is_file() \
        else None
    reason = reason or (user_error.splitlines()[0] if user_error else None) or (
        f"killed by signal {-code}" if code < 0 else f"exit {code}")
    write_json_atomic(stage_dir / FAILED, {"stage": name, "exit_code": code, "reason": reason, "time": time.time(),
                                           "log": str(log), "log_tail": tail})
    if user_error:
        print(f"[{name}] stopped before training:\n{user_error}\n[{name}] fix that, then run the same command "
              f"(full log: {log})", flush=True)
        return
    print(f"[{name}] failed ({reason}); last lines of {log}:", flush=True)
    for line in tail:
        print(f"    {line}")
    again = "the same command without --redo" if redo else "the same command"
    print(f"[{name}] full log: {log}. Run {again} again to resume from its newest complete checkpoint.", flush=True)


@dataclass
class StagePlan:
    """One selected stage as this run will treat it."""

    index: int
    stage: StageSpec
    stage_dir: Path
    model_in: str | None
    model_ready: bool  # the input model exists now (False: an earlier stage of this run will write it)
    options: dict[str, Any]
    origins: dict[str, str]  # option -> where the pipeline took it from, for messages
    done: bool
    redo: bool = False


def plan_stages(args: PipelineArguments, spec: PipelineSpec, root: Path, selected: list[int],
                overrides: dict[str | None, dict[str, str]], redo: set[str]) -> list[StagePlan]:
    """Each selected stage's input model and options (last one wins: stage options, dataset, input model and
    output_dir, --override KEY=VALUE, --override STAGE.KEY=VALUE), and whether it is done."""
    plans: list[StagePlan] = []
    redone_from = min((i for i, s in enumerate(spec.stages) if s.name in redo and is_done(root / s.name)),
                      default=None)
    for index in selected:
        stage = spec.stages[index]
        stage_dir = root / stage.name
        again = redone_from is not None and index >= redone_from
        if index == 0:
            model_in = args.model_name_or_path or spec.model_name_or_path
            ready = True
        else:
            previous = spec.stages[index - 1]
            model_in = str(root / previous.name / FINAL_DIR)
            ready = not any(p.index == index - 1 and not p.done for p in plans)  # else this run trains it first
        options: dict[str, Any] = dict(stage.options)
        origins = dict.fromkeys(stage.options, f"{args.pipeline}: stage {stage.name}, options")
        if model_in:
            options["model_name_or_path"] = model_in
        if stage.dataset:
            options["dataset"] = stage.dataset
            origins["dataset"] = f"{args.pipeline}: stage {stage.name}, dataset"
        if stage.replay:  # earlier stages' names -> their datasets (hs_rl.data.replay draws from them)
            names = [s.name for s in spec.stages]
            options["replay"] = {(_stage_dataset(spec, names.index(source), overrides) or source)
                                 if source in names else source: fraction for source, fraction in stage.replay.items()}
            origins["replay"] = f"{args.pipeline}: stage {stage.name}, replay"
        options["output_dir"] = str(stage_dir)
        options.setdefault("resume_from_checkpoint", "auto")
        for scope in (None, stage.name):
            for key, value in overrides.get(scope, {}).items():
                options[key] = value
                origins[key] = f"--override {scope + '.' if scope else ''}{key}={value}"
        plans.append(StagePlan(index, stage, stage_dir, model_in, ready, options, origins,
                               done=is_done(stage_dir) and not again, redo=again))
    return plans


def check_plan(plans: list[StagePlan], spec: PipelineSpec) -> tuple[list[str], list[str]]:
    """(problems, warnings) of every stage that will train, each line naming its stage; nothing is run."""
    from hs_rl.commands import parse_for_check
    from hs_rl.preflight import stage_problems

    problems: list[str] = []
    warnings: list[str] = []
    training = [p for p in plans if not p.done]
    for plan in training:
        name = plan.stage.name
        previous = spec.stages[plan.index - 1].name if plan.index > 0 else None
        if previous and plan.model_ready and not is_done(plan.stage_dir.parent / previous):
            problems.append(f"[{name}] starts from {previous}, which is not done (no verified {plan.model_in}): run "
                            f"that stage first (--from_stage {previous})")
            plan.model_ready = False
        words = [plan.stage.config]
        for key, value in plan.options.items():
            words += [f"--{key}", *_arg_value(value)]
        if "use_cpu" not in read_keys(plan) and not _has_accelerator():
            # the device is the training machine's business: a login node without GPU still checks the rest
            words += ["--use_cpu", "true"]
        try:
            (data_args, config, model_args), unknown = parse_for_check("train", words, plan.origins)
        except UserError as err:
            problems += [f"[{name}] {line}" for line in err.problems]
            continue
        problems += [f"[{name}] {line}" for line in unknown]
        problems += [f"[{name}] {line}" for line in _replay_problems(data_args)]
        check = stage_problems(data_args, config, model_args, model_ready=plan.model_ready, names=[name])
        problems += [f"[{name}] {line}" for line in check.problems]
        warnings += [f"[{name}] {line}" for line in check.warnings]
        if check.records is not None and not check.problems:
            print(f"[{name}] checked: {check.summary(data_args.dataset)}", flush=True)
        if check.problems and check.hints:
            problems[-1] += f" ({'; '.join(check.hints)})"
    return problems, warnings


def _replay_problems(data_args) -> list[str]:
    """The `replay` option's problems found without reading records (its sources are read when the stage starts)."""
    from hs_rl.data.replay import parse_replay, replay_problems

    try:
        return replay_problems(parse_replay(data_args.replay))
    except UserError as err:
        return list(err.problems)


def read_keys(plan: StagePlan) -> set[str]:
    """The keys the stage YAML (with its bases) and the pipeline set."""
    from hs_rl.commands import read_config

    try:
        return set(read_config(plan.stage.config)) | set(plan.options)
    except UserError:
        return set(plan.options)


def _has_accelerator() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def set_aside(folders: list[Path]) -> list[tuple[Path, Path]]:
    """Move each existing folder to NAME.before-redo-TIME beside it (one rename: nothing is copied or deleted)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved = []
    for folder in folders:
        if folder.exists():
            target = folder.with_name(f"{folder.name}.before-redo-{stamp}")
            folder.rename(target)
            moved.append((folder, target))
    return moved


def run_pipeline(args: PipelineArguments) -> int:
    """Check every selected stage, then run (or resume) them in order, each from the previous one's final model.

    A config or data problem in any stage is a UserError listing them all, before anything trains.
    """
    from hs_rl.logs import show_our_logs

    show_our_logs()
    if not args.pipeline:
        raise UserError("a pipeline YAML is required (hs-rl pipeline stages/pipeline.yaml)")
    spec = load_pipeline(args.pipeline)
    names = [s.name for s in spec.stages]
    overrides = parse_overrides(args.override, names)
    root = Path(args.output_dir or spec.output_dir)
    selected = select_stages(spec, args.from_stage, args.only)
    wrong = [f"--redo {name}: {_no_stage(name, names)}" for name in args.redo if name not in names]
    wrong += [f"--redo {name}: not among the stages this run trains (see --from_stage, --only)"
              for name in args.redo if name in names and names.index(name) not in selected]
    if wrong:
        raise UserError(wrong)
    launcher = _launcher_words(args, spec)
    plans = plan_stages(args, spec, root, selected, overrides, set(args.redo))
    for plan in plans:
        name = plan.stage.name
        if plan.done:
            print(f"[{name}] done, skipped (final model: {plan.stage_dir / FINAL_DIR})")
            changed = changed_settings(plan.stage_dir, stage_settings(plan.stage, plan.options, plan.index > 0))
            addressed = sorted(set(overrides.get(None, {})) | set(overrides.get(name, {})))
            if changed or (changed is None and addressed):
                what = f"its settings differ from those it was trained with ({', '.join(changed)})" if changed \
                    else f"--override {', '.join(addressed)} may differ from what it was trained with"
                print(f"[{name}] WARNING: {what}; a done stage is not trained again, so they were NOT applied. To "
                      f"train it again with them, add --redo {name} (the stages after it are trained again too)",
                      flush=True)
        else:
            if plan.redo and is_done(plan.stage_dir):
                print(f"[{name}] --redo: {plan.stage_dir} will be moved aside and the stage trained again", flush=True)
            print(f"[{name}] {shlex.join(stage_command(launcher, plan.stage, plan.options))}", flush=True)
    problems, warnings = check_plan(plans, spec)
    for warning in warnings:
        print(f"WARNING {warning}", flush=True)
    if problems:
        raise UserError(problems, hint="nothing was run: fix them and run the same command")
    if args.dry_run:
        print(f"dry run: {sum(not p.done for p in plans)} stage(s) checked, nothing run", flush=True)
        return 0
    redo_from = next((p for p in plans if p.redo), None)
    if redo_from is not None:
        later = [root / s.name for s in spec.stages[redo_from.index:]]
        for folder, target in set_aside(later):
            print(f"[{folder.name}] --redo: moved {folder} to {target} (delete it once no longer needed); if this "
                  f"run stops, run the same command without --redo to resume", flush=True)
    root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(root / PIPELINE_RECORD, {"pipeline": str(args.pipeline), "stages": names})
    evaluated: list[tuple[str, Path]] = []
    for plan in plans:
        stage, stage_dir = plan.stage, plan.stage_dir
        if plan.done:
            if stage.eval:
                run_stage_eval(stage, stage_dir, root, evaluated)
            continue
        command = stage_command(launcher, stage, plan.options)
        stage_dir.mkdir(parents=True, exist_ok=True)
        code = run_stage_process(stage.name, command, stage_dir, args.progress_interval)
        if code != 0:
            report_failure(stage.name, stage_dir, code, redo=bool(args.redo))
            return code if code > 0 else 1
        if not is_exported(stage_dir / FINAL_DIR):
            report_failure(stage.name, stage_dir, code, f"finished without a verified final model in "
                                                        f"{stage_dir / FINAL_DIR}", redo=bool(args.redo))
            return 1
        mark_done(stage_dir, stage, plan.model_in or "", stage_settings(stage, plan.options, plan.index > 0))
        print(f"[{stage.name}] done: {stage_dir / FINAL_DIR}", flush=True)
        run_stage_eval(stage, stage_dir, root, evaluated)
    return 0
