"""The one exception type for a user's mistake: a wrong path, option, YAML key, value or input file.

An entry point (`hs-rl …`, `python -m hs_rl.train`, the stage scripts) prints a `UserError` as its lines, without a
traceback, and exits 2; a traceback stays for what is not the user's doing (a bug, a crash). Each line names the
file, record or option and what to do. A `UserError` may carry several problems, so that one run reports all it
found at once instead of one per attempt.
"""
from __future__ import annotations

import os
from pathlib import Path

EXIT_CODE = 2
# Set by `hs-rl pipeline` for a stage it runs: where that stage writes the text of a UserError, so that the pipeline
# can tell "fix this" from "run again to resume" whatever launcher ran the stage (accelerate and torchrun exit 1).
ERROR_FILE_ENV = "HS_RL_USER_ERROR_FILE"


class UserError(ValueError):
    """One or more problems the user can fix; `str()` is one line per problem."""

    def __init__(self, problems: str | list[str], hint: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.hint = hint
        super().__init__("\n".join(self.problems + ([hint] if hint else [])))


def format_lines(error: UserError, prefix: str) -> list[str]:
    """One line per problem (several: a count first), `prefix` on the first, the hint last."""
    problems = [line for problem in error.problems for line in str(problem).splitlines()]
    if len(error.problems) == 1:
        lines = [f"{prefix}{problems[0]}", *(f"  {line}" for line in problems[1:])]
    else:
        lines = [f"{prefix}{len(error.problems)} problems:", *(f"  {line}" for line in problems)]
    return lines + ([f"  {error.hint}"] if error.hint else [])


def report(error: UserError, prefix: str) -> None:
    """Print a UserError (`format_lines`) on stderr, once per machine; also into the pipeline's error file."""
    import sys

    lines = format_lines(error, prefix)
    if _is_main_process():
        print("\n".join(lines), file=sys.stderr, flush=True)
    target = os.environ.get(ERROR_FILE_ENV)
    if target and _is_main_process():
        try:
            Path(target).write_text("\n".join(lines) + "\n", encoding="utf-8")
        except OSError:  # the console line above is what matters
            pass


def _is_main_process() -> bool:
    """Local rank 0 (or a plain process): one copy of a user error per machine, not one per GPU."""
    return os.environ.get("LOCAL_RANK", "0") in ("", "0")
