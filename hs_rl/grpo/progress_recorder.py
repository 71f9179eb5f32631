"""`ProgressRecorder`: the TrainerCallback that keeps `OUTPUT_DIR/progress.json` current (format: hs_rl.progress).

Only the world's process zero writes. It rewrites the record at every optimizer step and logging event, and a
daemon thread refreshes its `updated` time every `heartbeat_s` seconds while the process lives, so a reader can
tell a slow step from a dead process. An exception that ends the process during training is recorded as
`state: failed` with its message (atexit), Ctrl-C as `state: interrupted` (the same command resumes); a kill -9
leaves the record as it was, its heartbeat ageing.
"""
from __future__ import annotations

import atexit
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from hs_rl.progress import HEARTBEAT_S, PROGRESS_FILE, RECENT_STEPS, write_json_atomic


class ProgressRecorder(TrainerCallback):
    """Keeps `OUTPUT_DIR/progress.json` current from the world's process zero (other ranks write nothing)."""

    def __init__(self, output_dir: str | Path, heartbeat_s: float = HEARTBEAT_S):
        self.path = Path(output_dir) / PROGRESS_FILE
        self.heartbeat_s = heartbeat_s
        self.record: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._step_times: list[float] = []
        self._last_step_at: float | None = None
        # what the run was set up with beyond the Trainer's state (hs_rl.train: replay draws, probe sizes)
        self.info: dict[str, Any] = {}

    # ---- writing ----------------------------------------------------------------------------------------
    def _write(self, **changes: Any) -> None:
        with self._lock:
            self.record.update(changes)
            self.record["updated"] = time.time()
            try:
                write_json_atomic(self.path, self.record)
            except OSError:  # a full disk or a vanished folder must not stop training
                pass

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self._write()

    def _at_exit(self) -> None:
        """The process ends while training: say so, with the error when there was one (Ctrl-C: interrupted)."""
        error = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
        self._stop.set()
        if isinstance(error, KeyboardInterrupt):
            self._write(state="interrupted", error="interrupted (Ctrl-C)")
            return
        self._write(state="failed", error=f"{type(error).__name__}: {error}" if error is not None else
                    "the process exited before the last step")

    # ---- TrainerCallback hooks --------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        now = time.time()
        self._last_step_at = now
        self.record = {
            "stage": self.path.parent.name, "state": "training", "host": socket.gethostname(), "pid": os.getpid(),
            "started": now, "heartbeat_s": self.heartbeat_s, "step": int(state.global_step),
            "max_steps": int(state.max_steps), "start_step": int(state.global_step), "step_time_s": None,
            "step_at": None, "metrics": {}, "metrics_step": None, "error": None, **self.info,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write()
        atexit.register(self._at_exit)
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="hs-rl-progress", daemon=True)
        self._thread.start()

    def on_step_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or not self.record:
            return
        now = time.time()
        if self._last_step_at is not None:
            self._step_times = (self._step_times + [now - self._last_step_at])[-RECENT_STEPS:]
        self._last_step_at = now
        self._write(step=int(state.global_step), max_steps=int(state.max_steps), step_at=now,
                    step_time_s=sum(self._step_times) / len(self._step_times) if self._step_times else None)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not self.record or not logs or "train_runtime" in logs:
            return
        metrics = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if any(k.startswith("eval_") for k in metrics):  # a probe's evaluation: kept beside the training metrics
            probes = {**self.record.get("probe_metrics", {}), **{k: v for k, v in metrics.items()
                                                                  if k.startswith("eval_")}}
            self._write(probe_metrics=probes, probe_step=int(state.global_step))
            return
        self._write(metrics=metrics, metrics_step=int(state.global_step))

    def end(self, state: str, error: str) -> None:
        """The run ends outside the Trainer's loop (hs_rl.train.run_train: Ctrl-C is `interrupted`, a full disk
        `failed`): record it so, instead of the exception atexit would find."""
        if not self.record:
            return
        self._stop.set()
        atexit.unregister(self._at_exit)
        self._write(state=state, error=error)

    def on_train_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or not self.record:
            return
        self._stop.set()
        atexit.unregister(self._at_exit)
        self._write(state="trained", step=int(state.global_step))
