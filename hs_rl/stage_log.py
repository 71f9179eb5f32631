"""A stage run directly (`hs-rl train`, `accelerate launch -m hs_rl.train`, launch/stage*.sh) writes
`OUTPUT_DIR/train.log` and can show the pipeline's live line, as a stage that `hs-rl pipeline` runs does.

How: the process's stdout and stderr (file descriptors 1 and 2, so that what C libraries and DataLoader workers
print is caught too) become pipes read by a small helper process (`python -m hs_rl.stage_log`). The helper appends
everything to train.log and, by the console mode, either copies each stream to the console as well (`full`) or
shows only the live line read from progress.json (`live`: hs_rl.progress.StageConsole, on global rank 0). A
process, not a thread: it drains the pipes to their end even when the training process dies of a signal or a
crash, so the log keeps its last lines; it is in a session of its own, so Ctrl-C reaches the training only.

`HS_RL_CONSOLE` = live | full | off chooses (default: live on a terminal, full otherwise, so that a scheduler's log,
nohup or a test that captures the output still gets all of it, stdout and stderr apart). Under `hs-rl pipeline` the
stage's output already goes to train.log and nothing is done here.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from hs_rl.progress import StageConsole

CONSOLE_ENV = "HS_RL_CONSOLE"
UNDER_PIPELINE_ENV = "HS_RL_PIPELINE_STAGE"  # set by `hs-rl pipeline` in the environment of the stages it runs
LOG = "train.log"
INTERVAL_S = 30.0  # plain progress lines at most this often when the console is not a terminal (as the pipeline)
TAIL_LINES = 20


def console_mode() -> str:
    """live, full or off: `HS_RL_CONSOLE`, else live on a terminal and full otherwise; off under the pipeline."""
    if os.environ.get(UNDER_PIPELINE_ENV):
        return "off"
    mode = os.environ.get(CONSOLE_ENV, "").strip().lower()
    if mode in ("live", "full", "off"):
        return mode
    return "live" if sys.stdout.isatty() else "full"


class StageLog:
    """The open capture: fds 1 and 2 lead into the helper until `close()` puts the console back."""

    def __init__(self, path: Path, mode: str, helper: subprocess.Popen, saved: tuple[int, int]) -> None:
        self.path, self.mode, self.helper, self.saved = path, mode, helper, saved
        self.closed = False

    def to_console(self, text: str, past_the_line: bool = True) -> None:
        """Write straight to the console (the saved stderr), past the live line; used in `live` mode only."""
        text = ("\n" if past_the_line else "") + text.rstrip("\n") + "\n"
        os.write(self.saved[1], text.encode("utf-8", errors="replace"))

    def close(self) -> None:
        """Flush, give fds 1 and 2 back to the console, and wait until the helper has written everything."""
        if self.closed:
            return
        self.closed = True
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        with contextlib.suppress(subprocess.TimeoutExpired):  # a DataLoader worker may still hold the pipes
            self.helper.wait(timeout=30)


def tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    """The last lines of a log (read from its end, so a huge log costs nothing)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


def _is_global_rank_zero() -> bool:
    return os.environ.get("RANK", "0") in ("", "0")


@contextlib.contextmanager
def capture(output_dir: str | Path, name: str | None = None) -> Iterator[StageLog | None]:
    """Send this process's output to OUTPUT_DIR/train.log (and the console, by `console_mode()`) while inside.

    Yields None when nothing is captured (under the pipeline, or `HS_RL_CONSOLE=off`).
    """
    mode = console_mode()
    if mode == "off":
        yield None
        return
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / LOG
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    live = mode == "live" and _is_global_rank_zero()
    helper = subprocess.Popen(
        [sys.executable, "-m", "hs_rl.stage_log", str(path), mode, name or output_dir.name, str(output_dir),
         os.environ.get("HS_RL_PROGRESS_INTERVAL", str(INTERVAL_S)), "1" if live else "0", str(err_read)],
        stdin=out_read, pass_fds=(err_read,), start_new_session=True, close_fds=True)
    os.close(out_read)
    os.close(err_read)
    saved = (os.dup(1), os.dup(2))
    os.dup2(out_write, 1)
    os.dup2(err_write, 2)
    os.close(out_write)
    os.close(err_write)
    log = StageLog(path, mode, helper, saved)
    try:
        yield log
    finally:
        log.close()
        os.close(saved[0])
        os.close(saved[1])


# ---- the helper process -----------------------------------------------------------------------------------
def _pump(source: int, target: int | None, log, lock: threading.Lock) -> None:
    """Copy one pipe into the log (and `target`, the console) until every writer has closed it."""
    while True:
        try:
            chunk = os.read(source, 65536)
        except OSError:
            return
        if not chunk:
            return
        with lock:
            _append(log, chunk)
        if target is not None:
            with contextlib.suppress(OSError):  # a console that went away must not stop the log
                os.write(target, chunk)


def _append(log, chunk: bytes) -> None:
    """Write all of `chunk` to the (unbuffered) log; on a full disk drop it (a console in `full` mode still gets its
    copy): the pipe must go on being drained, or the stage would block on its next print, and a traceback here would
    bury the stage's own one-line disk-full message."""
    view = memoryview(chunk)
    try:
        while view:
            view = view[log.write(view):]
    except OSError:
        pass


def helper_main(argv: list[str]) -> int:
    """`python -m hs_rl.stage_log LOG MODE NAME STAGE_DIR INTERVAL LIVE ERR_FD` (started by `capture`)."""
    log_path, mode, name, stage_dir, interval, live, err_fd = argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the training process decides what Ctrl-C does
    console = StageConsole(name, stage_dir, interval=float(interval)) if live == "1" else None
    stop = threading.Event()
    poller = None
    if console is not None:
        def poll() -> None:
            while not stop.wait(0.5):
                console.poll()

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
    lock = threading.Lock()
    with open(log_path, "ab", buffering=0) as log:  # unbuffered: nothing is left to fail at close on a full disk
        pumps = [threading.Thread(target=_pump, args=(0, 1 if mode == "full" else None, log, lock)),
                 threading.Thread(target=_pump, args=(int(err_fd), 2 if mode == "full" else None, log, lock))]
        for pump in pumps:
            pump.start()
        for pump in pumps:
            pump.join()
    stop.set()
    if poller is not None:
        poller.join()
        console.close()
    return 0


if __name__ == "__main__":
    sys.exit(helper_main(sys.argv[1:]))
