"""Where a stage is: rank 0 keeps `OUTPUT_DIR/progress.json` up to date; the pipeline and `hs-rl status` read it.

The trainer side is a transformers `TrainerCallback` (hs_rl.grpo.progress_recorder, added by OmniGRPOTrainer):
on the world's process zero only, it rewrites one small JSON record atomically (temporary file, then rename) at every
optimizer step and logging event, and a daemon thread refreshes its `updated` time every `heartbeat_s` seconds
while the process lives. The record holds the step and total, the newest logged metrics (reward means, KL, …), a
recent time per step, and who writes it (host, pid). Readers never need the process: only the file, so they work
from any machine that sees the output folder.

Whether the writer still lives (see `is_alive`): on the writer's own host, its pid must exist (and not be a
zombie) and its heartbeat be fresh; from another host, the heartbeat alone decides (older than `stale_after`
seconds, by default four heartbeats, means it stopped). A kill -9 therefore reads as "interrupted" at once on the
same host and after about two minutes elsewhere.

The console side (`StageConsole`) turns the record into one live tqdm line on a terminal, or into plain lines at
most every `interval` seconds when the console is a file or a pipe (nohup, a scheduler's log). This module
imports neither torch nor transformers (the callback, which does, is hs_rl.grpo.progress_recorder).
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from hs_rl.atomic_files import atomic_write, read_json_dict

PROGRESS_FILE = "progress.json"
HEARTBEAT_S = 30.0
RECENT_STEPS = 20  # time per step: mean over this many most recent steps of the current process
# short labels on the console for the registered rewards (logged under their function names); others keep theirs
LABELS = {"accuracy_reward": "acc", "strict_accuracy_reward": "acc_strict", "format_reward": "fmt",
          "format_partial_reward": "fmt_partial", "answer_format_reward": "ans_fmt", "think_length_reward": "think_len"}


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` in one rename (hs_rl.atomic_files): a reader sees the old record or the new one, never half."""
    atomic_write(path, json.dumps(data, indent=1) + "\n")


def read_progress(stage_dir: str | Path) -> dict[str, Any] | None:
    """A stage's progress record, or None when there is none (or it cannot be read right now)."""
    return read_json_dict(Path(stage_dir) / PROGRESS_FILE)


# ---- reading --------------------------------------------------------------------------------------------
def pid_running(pid: int) -> bool:
    """Whether a process with this pid exists on this host and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" not in status


def heartbeat_age(record: dict[str, Any], now: float | None = None) -> float:
    """Seconds since the writer last touched the record."""
    return max(0.0, (now or time.time()) - float(record.get("updated") or 0.0))


def is_alive(record: dict[str, Any], stale_after: float | None = None, now: float | None = None) -> bool:
    """Whether the process that writes `record` still runs (module docstring: how, without a process table)."""
    if record.get("state") in ("failed",):
        return False
    limit = stale_after if stale_after is not None else max(120.0, 4 * float(record.get("heartbeat_s") or HEARTBEAT_S))
    if heartbeat_age(record, now) > limit:
        return False
    if record.get("host") == socket.gethostname() and record.get("pid"):
        return pid_running(int(record["pid"]))
    return True


def format_duration(seconds: float | None) -> str:
    """`45s`, `9m50s`, `3h05m`, `2d04h`."""
    if seconds is None:
        return "?"
    seconds = int(round(max(0.0, seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 0.1 and value != 0 else f"{value:.2f}"


def metric_words(metrics: dict[str, float]) -> list[str]:
    """`reward 0.61`, one `<reward> mean` per reward function (short labels), `kl 0.012`."""
    words = []
    if "reward" in metrics:
        words.append(f"reward {_number(metrics['reward'])}")
    for key, value in metrics.items():
        if key.startswith("rewards/") and key.endswith("/mean"):
            name = key[len("rewards/"):-len("/mean")]
            words.append(f"{LABELS.get(name, name)} {_number(value)}")
    if "kl" in metrics:
        words.append(f"kl {_number(metrics['kl'])}")
    return words


def bar(fraction: float, width: int = 10, stream: TextIO | None = None) -> str:
    """`▕██████░░░░▏`, or `[######----]` where the console cannot print block characters."""
    full = int(round(max(0.0, min(1.0, fraction)) * width))
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        "▕█░▏".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "[" + "#" * full + "-" * (width - full) + "]"
    return "▕" + "█" * full + "░" * (width - full) + "▏"


def eta_seconds(record: dict[str, Any]) -> float | None:
    """Remaining steps × recent time per step."""
    step_time, total = record.get("step_time_s"), record.get("max_steps") or 0
    if step_time is None or total <= 0:
        return None
    return max(0, total - int(record.get("step") or 0)) * float(step_time)


def describe(record: dict[str, Any], with_bar: bool = True, stream: TextIO | None = None, eta: bool = True) -> str:
    """`step 120/400  ▕██████░░░░▏ 30 %  reward 0.61  acc 0.55  fmt 0.98  kl 0.012  2.1 s/step  ETA 9m50s`."""
    step, total = int(record.get("step") or 0), int(record.get("max_steps") or 0)
    words = [f"step {step}/{total}" if total > 0 else f"step {step}"]
    if with_bar and total > 0:
        words.append(f"{bar(step / total, stream=stream)} {100 * step / total:.0f} %")
    words += metric_words(record.get("metrics") or {})
    if record.get("step_time_s") is not None:
        words.append(f"{record['step_time_s']:.2g} s/step" if record["step_time_s"] < 10
                     else f"{record['step_time_s']:.0f} s/step")
        if eta and step < total:
            words.append(f"ETA {format_duration(eta_seconds(record))}")
    return "  ".join(words)


def _same_attempt(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    keys = ("host", "pid", "started")
    return a is not None and b is not None and all(a.get(k) == b.get(k) for k in keys)


class StageConsole:
    """The pipeline's live line for one running stage, driven by the stage's progress record.

    On a terminal: a tqdm bar redrawn in place. Otherwise: a plain line whenever the step moved and at least
    `interval` seconds passed since the last one, and always one for the last step seen. A record left by an
    earlier attempt (same host, pid and start time as before launch) is ignored until the new one appears.
    """

    def __init__(self, name: str, stage_dir: str | Path, interval: float = 30.0, stream: TextIO | None = None):
        self.name, self.stage_dir, self.interval = name, Path(stage_dir), interval
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.previous = read_progress(self.stage_dir)  # an earlier attempt's record, if any
        self.record: dict[str, Any] | None = None
        self.printed_step: int | None = None
        self.printed_at = 0.0
        self._bar = None

    def poll(self) -> None:
        """Read the record; redraw the bar, or print a line when due."""
        record = read_progress(self.stage_dir)
        if record is None or _same_attempt(record, self.previous):
            return
        self.record = record
        if self.tty:
            self._draw(record)
            return
        step = int(record.get("step") or 0)
        if step != self.printed_step and time.time() - self.printed_at >= self.interval:
            self._print(record)

    def _print(self, record: dict[str, Any]) -> None:
        print(f"{self.name}  {describe(record, stream=self.stream)}", file=self.stream, flush=True)
        self.printed_step, self.printed_at = int(record.get("step") or 0), time.time()

    def _draw(self, record: dict[str, Any]) -> None:
        from tqdm import tqdm

        total, step = int(record.get("max_steps") or 0), int(record.get("step") or 0)
        head, _, tail = describe(record, with_bar=False, stream=self.stream).partition("  ")
        desc = f"{self.name}  {head}  ▕"
        postfix = f"▏ {100 * step / total:.0f} %  {tail}" if total else f"▏  {tail}"
        if self._bar is None:
            self._bar = tqdm(total=total or None, initial=step, file=self.stream, desc=desc, ascii="░█",
                             bar_format="{desc}{bar:10}{unit}", unit=postfix, leave=True)
            return
        self._bar.total = total or None
        self._bar.n = step
        self._bar.desc, self._bar.unit = desc, postfix
        self._bar.refresh()

    def close(self) -> None:
        """The stage's process ended: finish the bar, or print the last step seen if it was not printed."""
        self.poll()
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.record is not None and int(self.record.get("step") or 0) != self.printed_step:
            self._print(self.record)
