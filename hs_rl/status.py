"""`hs-rl status OUTPUT_DIR [--watch]`: where a run is, for every stage, from the files the run writes.

It reads only files (so it works while the run goes on, and from any machine that sees the folder):
`pipeline.json` (stage order), each stage's `progress.json` (hs_rl.progress: step, total, newest metrics, time
per step, writer host/pid and heartbeat), `checkpoint-N/hs_rl_complete.json` (complete checkpoints),
`final/hs_rl_export.json` (exported and verified), `STAGE_DONE.json`, `STAGE_FAILED.json`, `train.log`,
`log_history.json` and `report/curves.png`.

A stage is, in this order of precedence:
- done: `STAGE_DONE.json` and a verified `final/` (or, for a stage run by hand, a verified `final/` and no live
  writer);
- failed: the pipeline left `STAGE_FAILED.json` after the newest attempt started, or the trainer recorded the
  exception it died of;
- running (or exporting, once the last step is done): its progress record's writer is alive — on the writer's
  host its pid exists and its heartbeat is fresh; elsewhere its heartbeat is fresh (hs_rl.progress.is_alive);
- starting: a newer attempt is writing `train.log` but has not reached its first step yet;
- interrupted: the run recorded that Ctrl-C stopped it, or there is a record, a checkpoint or a log but nothing
  alive writes it (killed, node lost); the same command resumes from the newest complete checkpoint;
- not started: nothing of it on disk.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hs_rl.atomic_files import read_json_dict
from hs_rl.grpo.checkpoints import checkpoints, newest_complete_checkpoint
from hs_rl.omni.export import FINAL_DIR, is_exported
from hs_rl.pipeline import DONE, FAILED, LOG, PIPELINE_RECORD
from hs_rl.progress import PROGRESS_FILE, describe, format_duration, heartbeat_age, is_alive, read_progress

CURVES = Path("report") / "curves.png"  # written by `hs-rl plot`


@dataclass
class StatusArguments:
    """Options of `hs-rl status OUTPUT_DIR`."""

    output_dir: str = field(default=None, metadata={"help": "A pipeline's output_dir, or one stage's."})
    watch: bool = field(default=False, metadata={"help": "Refresh every --interval seconds until Ctrl-C."})
    interval: float = field(default=10.0, metadata={"help": "Seconds between refreshes with --watch."})
    stale_after: float | None = field(default=None, metadata={
        "help": "Seconds without a heartbeat after which a run on another host counts as interrupted "
                "(default: four heartbeats, at least 120)."})


@dataclass
class StageStatus:
    """What `status` says about one stage."""

    name: str
    folder: Path
    state: str
    record: dict[str, Any] | None = None
    details: list[str] = field(default_factory=list)


def _looks_like_stage(folder: Path) -> bool:
    return folder.is_dir() and (any((folder / name).exists() for name in
                                    (PROGRESS_FILE, DONE, FAILED, LOG, FINAL_DIR, "log_history.json"))
                                or bool(checkpoints(folder)))


def stage_folders(root: Path) -> list[tuple[str, Path]]:
    """The stages under `root` in pipeline order (pipeline.json), or `root` itself when it is one stage's folder."""
    record = read_json_dict(root / PIPELINE_RECORD)
    if record and isinstance(record.get("stages"), list):
        return [(str(name), root / str(name)) for name in record["stages"]]
    if _looks_like_stage(root):
        return [(root.name, root)]
    return [(p.name, p) for p in sorted(root.iterdir()) if _looks_like_stage(p)] if root.is_dir() else []


def _record_from_history(folder: Path) -> dict[str, Any] | None:
    """A progress-like record from `log_history.json` (a stage finished before progress records existed)."""
    try:
        history = json.loads((folder / "log_history.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    logged = [h for h in history if isinstance(h, dict) and "reward" in h]
    if not logged:
        return None
    last = logged[-1]
    return {"step": int(last.get("step") or 0), "max_steps": int(last.get("step") or 0), "metrics": last}


def stage_status(name: str, folder: Path, stale_after: float | None = None, now: float | None = None) -> StageStatus:
    """The state of one stage and the lines that explain it (module docstring: the rules)."""
    now = now or time.time()
    record = read_progress(folder)
    failed = read_json_dict(folder / FAILED)
    exported = is_exported(folder / FINAL_DIR)
    # a run stopped by Ctrl-C said so itself (hs_rl.grpo.progress_recorder): no need to wait for its heartbeat to age
    stopped = record is not None and record.get("state") == "interrupted"
    alive = record is not None and not stopped and is_alive(record, stale_after, now)
    log = folder / LOG
    log_mtime = log.stat().st_mtime if log.is_file() else None
    if record is None and folder.is_dir():
        record = _record_from_history(folder)
    if not folder.is_dir() or not _looks_like_stage(folder):
        state = "not started"
    elif (folder / DONE).is_file() and exported and not alive:
        state = "done"
    elif failed and (record is None or float(failed.get("time") or 0) >= float(record.get("started") or 0)):
        state = "failed"
    elif alive:
        state = "exporting" if record.get("state") == "trained" else "running"
    elif record is not None and record.get("state") == "failed":
        state = "failed"
    elif exported and (record is None or record.get("state") == "trained"):
        state = "done"
    elif (log_mtime is not None and now - log_mtime < 120
          and (record is None or "updated" not in record or log_mtime > float(record["updated"]) + 5)):
        state = "starting"
    else:
        state = "interrupted"
    status = StageStatus(name=name, folder=folder, state=state, record=record)
    _explain(status, failed, exported, log, now)
    return status


def _explain(status: StageStatus, failed: dict[str, Any] | None, exported: bool, log: Path, now: float) -> None:
    """The detail lines under a stage's headline."""
    record, folder, details = status.record, status.folder, status.details
    if status.state == "not started":
        return
    if status.state == "failed":
        if failed:
            details.append(f"failed: {failed.get('reason') or 'exit ' + str(failed.get('exit_code'))}")
            details += [f"  | {line}" for line in (failed.get("log_tail") or [])[-5:]]
        elif record and record.get("error"):
            details.append(f"failed: {record['error']}")
    if record and "host" in record:
        age = format_duration(heartbeat_age(record, now))
        who = f"host {record['host']}, pid {record['pid']}"
        if status.state in ("running", "exporting"):
            last_step = (f"; last step {format_duration(now - float(record['step_at']))} ago"
                         if record.get("step_at") else "")
            details.append(f"{who}; last heartbeat {age} ago{last_step}")
        elif status.state == "interrupted" and record.get("state") == "interrupted":
            details.append(f"stopped: {record.get('error') or 'interrupted'} ({who}; {age} ago)")
        elif status.state == "interrupted":
            details.append(f"stopped: no live writer ({who}; last heartbeat {age} ago)")
    if record and record.get("replay"):  # hs_rl.data.replay: what the stage mixed into its own records
        parts = [f"{d['records']} from {d['source']}" for d in record["replay"] if isinstance(d, dict)]
        details.append(f"replay: {', '.join(parts)} (+ {record.get('records', '?')} own records)")
    if record and record.get("probe_metrics"):  # hs_rl.data.probes: the newest evaluation of each probe
        from hs_rl.data.probes import probe_series

        series = probe_series([{**record["probe_metrics"], "step": record.get("probe_step") or 0}])
        shown = ", ".join(f"{name} {points[-1][1]:.2f}" for name, points in series.items())
        details.append(f"probes (accuracy, step {record.get('probe_step')}): {shown}")
    newest = newest_complete_checkpoint(folder)
    details.append(f"newest complete checkpoint: {newest if newest else 'none yet'}")
    if status.state in ("interrupted", "failed"):
        resume = newest.name if newest else "the start"
        details.append(f"the same command resumes from {resume}")
    details.append(f"final: {'exported and verified' if exported else 'not exported'} ({folder / FINAL_DIR})"
                   if exported or status.state in ("done", "exporting") else "final: not exported yet")
    if log.is_file():
        details.append(f"log: {log}")
    if (folder / CURVES).is_file():
        details.append(f"curves: {folder / CURVES}")


def format_status(statuses: list[StageStatus]) -> str:
    """One headline per stage, details indented under it."""
    width = max(len(s.name) for s in statuses) + 2
    lines = []
    for status in statuses:
        head = f"{status.name:<{width}}{status.state:<13}"
        if status.record is not None and status.state != "not started":
            head += describe(status.record, with_bar=status.state != "done",
                             eta=status.state in ("running", "starting"))
        lines.append(head.rstrip())
        lines += [f"    {line}" for line in status.details]
    return "\n".join(lines)


def collect(root: Path, stale_after: float | None = None) -> list[StageStatus]:
    """Every stage's status under `root`."""
    return [stage_status(name, folder, stale_after) for name, folder in stage_folders(root)]


def run_status(args: StatusArguments) -> int:
    """Print the run's state (again every `interval` seconds with --watch)."""
    if not args.output_dir:
        print("hs-rl status: give a run's folder (hs-rl status experiments/humansense)")
        return 2
    root = Path(args.output_dir)
    if not root.exists():
        print(f"hs-rl status: {root} does not exist")
        return 1
    while True:
        statuses = collect(root, args.stale_after)
        if not statuses:
            print(f"hs-rl status: no run in {root}: no pipeline.json, progress.json, checkpoint, train.log or "
                  f"final/ there or in its sub-folders (give the output_dir of `hs-rl pipeline` or `hs-rl train`)")
            return 1
        text = f"{root}  ({time.strftime('%Y-%m-%d %H:%M:%S')})\n{format_status(statuses)}"
        if args.watch and sys.stdout.isatty():
            sys.stdout.write("\033[H\033[J")
        print(text, flush=True)
        if not args.watch:
            return 0
        try:
            time.sleep(max(0.5, args.interval))
        except KeyboardInterrupt:
            return 0
        if not sys.stdout.isatty():
            print()
