"""Replay: a stage mixes a share of earlier stages' training records into its own, so it keeps their skills.

Why: a later stage answers new questions with the same answer letters (or words), and GRPO on its records alone
pulls the earlier questions onto whatever the new ones reward; the KL term only pulls them back towards its
reference. Rehearsing a few earlier records keeps each earlier skill rewarded while the new one is learnt.

`replay: {SOURCE: FRACTION, ...}` (a stage option, `DataArguments.replay`): from each SOURCE (a records JSONL or
HumanSense training JSON; in a pipeline YAML an earlier stage's name, resolved by hs_rl.pipeline to that stage's
dataset) `round(FRACTION × this stage's record count)` records are drawn without replacement. The draw depends on
the run's seed, the source's file name and its records only, so every rank and every resume draws the same list.
The records keep their own modality and media (a batch may mix modalities), and are validated like the stage's own
(the caller's `load`).
"""
from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hs_rl.choices import mapping_option
from hs_rl.data.records import Record
from hs_rl.errors import UserError

OPTION = "replay"


@dataclass
class ReplayDraw:
    """What one source gave: for the stage's log, progress.json and `hs-rl status`."""

    source: str
    fraction: float
    records: int  # drawn
    available: int  # in the source (valid ones)
    modalities: dict[str, int]

    def describe(self) -> str:
        """`16 records (of 64) from data/stage1_video.jsonl (video 16)`."""
        parts = ", ".join(f"{m} {n}" for m, n in sorted(self.modalities.items())) or "none"
        return f"{self.records} records (of {self.available}) from {self.source} ({parts})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_replay(value: Any) -> dict[str, float] | None:
    """The option as {source: fraction}: a mapping (YAML), a YAML/JSON string (the command line) or None.

    Every problem is a UserError naming the option and the entry."""
    value = mapping_option(value, OPTION, "{data/stage1_video.jsonl: 0.25}")
    if value is None:
        return None
    parsed, problems = {}, []
    for source, fraction in value.items():
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not math.isfinite(fraction) \
                or fraction <= 0:
            problems.append(f"{OPTION}: {source}: the fraction must be a number above 0 (a share of this stage's "
                            f"record count, e.g. 0.25), got {fraction!r}")
            continue
        parsed[str(source)] = float(fraction)
    if problems:
        raise UserError(problems)
    return parsed or None


def replay_problems(replay: dict[str, float] | None) -> list[str]:
    """Problems found without reading records (for a pre-flight check): each source must be a file."""
    return [f"{OPTION}: {source} does not exist (a records JSONL, or in a pipeline YAML an earlier stage's name)"
            for source in replay or {} if not Path(source).is_file()]


def replay_count(fraction: float, own: int) -> int:
    """How many records a source gives: round(fraction × this stage's own record count), at least 1."""
    return max(1, round(fraction * own))


def _source_seed(seed: int, source: str, records: list[Record]) -> list[int]:
    """The draw's seed: the run's seed, the file's name and its records' ids (not the path: a resumed or moved run
    reads it from elsewhere)."""
    digest = hashlib.sha256(Path(source).name.encode())
    for record in records:
        digest.update(record.id.encode() + b"\0")
    return [int(seed), int.from_bytes(digest.digest()[:8], "little")]


def draw_replay(own_count: int, replay: dict[str, float] | None, seed: int,
                load: Callable[[str], list[Record]]) -> tuple[list[Record], list[ReplayDraw]]:
    """The replayed records of every source (in the sources' order, each in its file order) and what each gave.

    `load(source)` reads a source's records as the stage reads its own (validated)."""
    drawn: list[Record] = []
    draws: list[ReplayDraw] = []
    problems = replay_problems(replay)
    if problems:
        raise UserError(problems)
    for source, fraction in (replay or {}).items():
        records = load(source)
        count = replay_count(fraction, own_count)
        if count > len(records):
            raise UserError(f"{OPTION}: {source}: {fraction} of this stage's {own_count} records is {count}, but it "
                            f"holds {len(records)} records: lower the fraction to at most "
                            f"{len(records) / max(own_count, 1):.2f}")
        rng = np.random.default_rng(_source_seed(seed, source, records))
        picked = [records[i] for i in sorted(rng.choice(len(records), size=count, replace=False).tolist())]
        drawn += picked
        draws.append(ReplayDraw(source=source, fraction=fraction, records=count, available=len(records),
                                modalities=dict(Counter(r.modality for r in picked))))
    return drawn, draws


def describe_draws(draws: list[ReplayDraw], own_count: int) -> str:
    """The log line: `replay: 16 records (of 64) from … (video 16); 64 own + 16 replayed = 80`."""
    replayed = sum(d.records for d in draws)
    return (f"replay: {'; '.join(d.describe() for d in draws)}; {own_count} own + {replayed} replayed = "
            f"{own_count + replayed} records")
