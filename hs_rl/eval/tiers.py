"""The benchmark's L1-L4 tiers, read from resources/tiers.yaml so the grouping is data, not code."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

UNASSIGNED = "unassigned"  # the tier of a task not in the benchmark (scores.json); report.md/tasks.png say so in words


@dataclass(frozen=True)
class TaskInfo:
    """One benchmark task: its abbreviation, tier, known strings and the paper's baseline."""

    abbrev: str
    name: str
    tier: str
    task_types: tuple[str, ...]
    aliases: tuple[str, ...]
    baseline: float | None
    in_paper_avg: bool
    questions: int | None


def normalize_task_type(task_type: str) -> str:
    """Lowercase with every separator dropped, so spelling variants of one task compare equal."""
    return re.sub(r"[^0-9a-z]+", "", str(task_type).lower())


@functools.lru_cache(maxsize=1)
def load_tiers() -> dict[str, Any]:
    """The parsed tiers.yaml (cached); works from a source tree and from an installed wheel."""
    text = resources.files("hs_rl").joinpath("resources/tiers.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


@functools.lru_cache(maxsize=1)
def tasks() -> dict[str, TaskInfo]:
    """Abbreviation -> TaskInfo, in tier order."""
    out: dict[str, TaskInfo] = {}
    for tier, body in load_tiers()["tiers"].items():
        for abbrev, info in body["tasks"].items():
            out[abbrev] = TaskInfo(abbrev=abbrev, name=info.get("name", abbrev), tier=tier,
                                   task_types=tuple(info.get("task_types") or ()),
                                   aliases=tuple(info.get("aliases") or ()), baseline=info.get("baseline"),
                                   in_paper_avg=bool(info.get("in_paper_avg", False)),
                                   questions=info.get("questions"))
    return out


def tier_names() -> list[str]:
    """The tiers in order, e.g. ["L1", "L2", "L3", "L4"] (UNASSIGNED is not among them)."""
    return list(load_tiers()["tiers"])


@functools.lru_cache(maxsize=1)
def _lookup() -> dict[str, str]:
    """Normalised task_type string -> abbreviation; exact strings win over aliases."""
    table: dict[str, str] = {}
    for info in tasks().values():
        for alias in (*info.aliases, info.abbrev):
            table.setdefault(normalize_task_type(alias), info.abbrev)
    for info in tasks().values():
        for known in info.task_types:
            table[normalize_task_type(known)] = info.abbrev
    return table


def task_info(task_type: str) -> TaskInfo | None:
    """The task a task_type string names, or None when it is unknown."""
    abbrev = _lookup().get(normalize_task_type(task_type))
    return tasks()[abbrev] if abbrev else None


def classify(task_type: str) -> tuple[str, str]:
    """(tier, abbreviation) of a task_type; unknown ones give (UNASSIGNED, the task_type itself)."""
    info = task_info(task_type)
    return (info.tier, info.abbrev) if info else (UNASSIGNED, str(task_type))


def paper_avg_baseline() -> float | None:
    """The paper's Avg. for Qwen2.5-Omni-7B."""
    return load_tiers().get("paper_avg_baseline")
