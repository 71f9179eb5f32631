"""A test reward that scores 0 and, on the call named by HS_RL_TEST_STALL_AT_CALL, blocks until the process is
killed: a stage stopped mid-run at a known step, with the checkpoints before it complete (tests/test_progress.py)."""
import os
import time

_calls = 0


def zero_or_stall(completions, **kwargs):
    global _calls
    _calls += 1
    if _calls == int(os.environ.get("HS_RL_TEST_STALL_AT_CALL", "0")):
        while True:
            time.sleep(1)
    return [0.0] * len(completions)
