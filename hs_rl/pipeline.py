"""`hs-rl pipeline PIPELINE.yaml`: the stages of a pipeline YAML, in order, each from the previous one's model.

A stage runs as its own `hs-rl train` process (optionally under a launcher such as `accelerate launch …` or
`torchrun …`), so memory is returned between stages and a killed run is resumed by running the same command:
a done stage (final model exported and verified, `STAGE_DONE.json` written last) is skipped, an unfinished one
resumes from its newest complete checkpoint (`resume_from_checkpoint: auto`).

While a stage runs, its output goes to `OUTPUT_DIR/NAME/train.log`; the console shows one live progress line per
stage, read from the stage's `progress.json` (hs_rl.progress), and a failed stage's last log lines. The pipeline
writes `OUTPUT_DIR/pipeline.json` (the stages in order) and `STAGE_FAILED.json` in a stage that failed, so that
`hs-rl status OUTPUT_DIR` can tell every stage's state from the files alone.

Overrides: `--override KEY=VALUE` applies to every stage, `--override STAGE.KEY=VALUE` to one; KEY is any
option of `hs-rl train` (a stage YAML key), VALUE is passed on as written (space-separated for lists).
"""
from __future__ import annotations

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

from hs_rl.atomic_files import atomic_write
from hs_rl.grpo.export import FINAL_DIR, is_exported
from hs_rl.progress import StageConsole, write_json_atomic
from hs_rl.rewards.registry import specs_relative_to

logger = logging.getLogger(__name__)

DONE = "STAGE_DONE.json"
FAILED = "STAGE_FAILED.json"  # the stage's last run under the pipeline exited non-zero (removed when it restarts)
PIPELINE_RECORD = "pipeline.json"  # OUTPUT_DIR/pipeline.json: the stage names in order, for `hs-rl status`
LOG = "train.log"
TAIL_LINES = 20  # log lines shown on the console when a stage fails


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
    dry_run: bool = field(default=False, metadata={"help": "Print each stage's command without running it."})
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
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not isinstance(data.get("stages"), list) or not data["stages"]:
        raise ValueError(f"{path}: expected a mapping with a non-empty `stages:` list")
    unknown = set(data) - {"stages", "output_dir", "model_name_or_path", "launcher"}
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}")
    stages = []
    for i, entry in enumerate(data["stages"]):
        if not isinstance(entry, dict) or "name" not in entry or "config" not in entry:
            raise ValueError(f"{path}: stage {i} needs at least `name:` and `config:`")
        bad = set(entry) - {"name", "config", "dataset", "eval", "options"}
        if bad:
            raise ValueError(f"{path}: stage {entry['name']!r} has unknown key(s) {sorted(bad)}")
        config = Path(entry["config"])
        config = config if config.is_absolute() else path.parent / config
        if not config.is_file():
            raise FileNotFoundError(f"{path}: stage {entry['name']!r}: config {config} does not exist")
        options = dict(entry.get("options") or {})
        if isinstance(options.get("reward_funcs"), list):  # reward files beside the pipeline YAML, as in a stage's
            options["reward_funcs"] = specs_relative_to(options["reward_funcs"], path.parent)
        stages.append(StageSpec(name=str(entry["name"]), config=str(config), dataset=entry.get("dataset"),
                                eval=entry.get("eval"), options=options))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: stage names repeat: {names}")
    return PipelineSpec(stages=stages, **{k: data[k] for k in ("output_dir", "model_name_or_path", "launcher")
                                           if data.get(k) is not None})


def parse_overrides(items: list[str], names: list[str]) -> dict[str | None, dict[str, str]]:
    """`KEY=VALUE` → {None: {KEY: VALUE}} (all stages); `STAGE.KEY=VALUE` → {STAGE: {KEY: VALUE}}."""
    parsed: dict[str | None, dict[str, str]] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--override {item!r}: expected KEY=VALUE or STAGE.KEY=VALUE")
        key, value = item.split("=", 1)
        stage, _, option = key.rpartition(".")
        if stage and stage not in names:
            raise ValueError(f"--override {item!r}: no stage named {stage!r} (stages: {', '.join(names)})")
        parsed.setdefault(stage or None, {})[option] = value
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
    for value in (from_stage, only):
        if value is not None and value not in names:
            raise ValueError(f"no stage named {value!r} (stages: {', '.join(names)})")
    if only is not None:
        return [names.index(only)]
    return list(range(names.index(from_stage) if from_stage else 0, len(names)))


def is_done(stage_dir: Path) -> bool:
    """A stage is done once its final model is exported, verified, and the done marker written after that."""
    return (stage_dir / DONE).is_file() and is_exported(stage_dir / FINAL_DIR)


def mark_done(stage_dir: Path, stage: StageSpec, model_in: str) -> None:
    """Write the done marker (last, fsynced) with what the stage read and produced."""
    history_file = stage_dir / "log_history.json"
    history = json.loads(history_file.read_text()) if history_file.is_file() else []
    atomic_write(stage_dir / DONE, json.dumps({
        "stage": stage.name, "input_model": model_in, "final_model": str(stage_dir / FINAL_DIR),
        "steps": max((h.get("step", 0) for h in history), default=0), "time": time.time(),
    }, indent=2) + "\n")


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
    options.setdefault("out", str(stage_dir / "eval" / "results.jsonl"))
    options.setdefault("label", stage.name)
    data = options.get("data")
    options["data"] = [data] if isinstance(data, str) else list(data or [])
    out = evaluate(EvalArguments(model=str(stage_dir / FINAL_DIR), **options))
    evaluated.append((stage.name, Path(out)))
    from hs_rl.eval.scoring import ScoreArguments, run_score

    run_score(ScoreArguments(results=[str(p) for _, p in evaluated], out=str(root / "report"),
                             labels=[name for name, _ in evaluated]))


def log_tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    """The last lines of a log (read from its end, so a huge log costs nothing)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


def run_stage_process(name: str, command: list[str], stage_dir: Path, interval: float) -> int:
    """Run one stage with its output in `train.log`, showing its progress line until it exits."""
    (stage_dir / FAILED).unlink(missing_ok=True)
    console = StageConsole(name, stage_dir, interval=interval)
    with open(stage_dir / LOG, "a", encoding="utf-8") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=os.environ.copy())
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


def report_failure(name: str, stage_dir: Path, code: int, reason: str | None = None) -> None:
    """Say where a failed stage's log is, show its last lines, and leave STAGE_FAILED.json for `hs-rl status`."""
    log = stage_dir / LOG
    tail = log_tail(log)
    reason = reason or (f"killed by signal {-code}" if code < 0 else f"exit {code}")
    write_json_atomic(stage_dir / FAILED, {"stage": name, "exit_code": code, "reason": reason, "time": time.time(),
                                           "log": str(log), "log_tail": tail})
    print(f"[{name}] failed ({reason}); last lines of {log}:", flush=True)
    for line in tail:
        print(f"    {line}")
    print(f"[{name}] full log: {log}. Run the same command again to resume from its newest complete checkpoint.",
          flush=True)


def run_pipeline(args: PipelineArguments) -> int:
    """Run (or resume) the selected stages; each starts from the previous stage's verified final model."""
    from hs_rl.cli import show_our_logs

    show_our_logs()
    if not args.pipeline:
        print("hs-rl pipeline: a pipeline YAML is required (hs-rl pipeline stages/pipeline.yaml)")
        return 2
    spec = load_pipeline(args.pipeline)
    names = [s.name for s in spec.stages]
    overrides = parse_overrides(args.override, names)
    root = Path(args.output_dir or spec.output_dir)
    selected = select_stages(spec, args.from_stage, args.only)
    launcher = _launcher_words(args, spec)
    evaluated: list[tuple[str, Path]] = []
    if not args.dry_run:
        root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(root / PIPELINE_RECORD, {"pipeline": str(args.pipeline), "stages": names})
    for index in selected:
        stage = spec.stages[index]
        stage_dir = root / stage.name
        if index == 0:
            model_in = args.model_name_or_path or spec.model_name_or_path
        else:
            previous = root / spec.stages[index - 1].name
            if not is_done(previous) and not args.dry_run:
                raise RuntimeError(f"stage {stage.name} starts from {spec.stages[index - 1].name}, which is not done "
                                   f"(no verified {previous / FINAL_DIR}); run that stage first")
            model_in = str(previous / FINAL_DIR)
        if is_done(stage_dir):
            print(f"[{stage.name}] done, skipped (final model: {stage_dir / FINAL_DIR})")
            if stage.eval and not args.dry_run:
                run_stage_eval(stage, stage_dir, root, evaluated)
            continue
        options: dict[str, Any] = dict(stage.options)
        if model_in:
            options["model_name_or_path"] = model_in
        if stage.dataset:
            options["dataset"] = stage.dataset
        options["output_dir"] = str(stage_dir)
        options.setdefault("resume_from_checkpoint", "auto")
        options.update(overrides.get(None, {}))
        options.update(overrides.get(stage.name, {}))
        command = stage_command(launcher, stage, options)
        print(f"[{stage.name}] {shlex.join(command)}", flush=True)
        if args.dry_run:
            continue
        stage_dir.mkdir(parents=True, exist_ok=True)
        code = run_stage_process(stage.name, command, stage_dir, args.progress_interval)
        if code != 0:
            report_failure(stage.name, stage_dir, code)
            return code if code > 0 else 1
        if not is_exported(stage_dir / FINAL_DIR):
            report_failure(stage.name, stage_dir, code, f"finished without a verified final model in "
                                                        f"{stage_dir / FINAL_DIR}")
            return 1
        mark_done(stage_dir, stage, model_in or "")
        print(f"[{stage.name}] done: {stage_dir / FINAL_DIR}", flush=True)
        run_stage_eval(stage, stage_dir, root, evaluated)
    return 0
