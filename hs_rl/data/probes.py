"""Probes: small held-out sets a stage is measured on while it trains (`probe_datasets: {NAME: FILE}`).

Why: a later stage can lose what an earlier one taught; measured only at the end, the loss shows up after the
run. Each probe is one of TRL's evaluation sets (a dict `eval_dataset`), scored by the stage's own rewards every
`eval_steps` steps; its metrics are logged as `eval_NAME_rewards/<reward>/mean` (the accuracy reward's mean: the
share of sampled answers that are right) and drawn in curves.png (hs_rl.plots).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hs_rl.choices import mapping_option
from hs_rl.errors import UserError

OPTION = "probe_datasets"
PREFIX = "eval_"  # what transformers prepends to a dict eval set's name
# eval_video_rewards/accuracy_reward/mean -> ("video", "accuracy_reward")
PROBE_KEY = re.compile(r"^eval_(?P<name>.+?)_rewards/(?P<reward>[^/]+)/mean$")


def parse_probe_datasets(value: Any) -> dict[str, str] | None:
    """The option as {name: file}: a mapping, a YAML/JSON string (the command line) or None; problems as UserError."""
    value = mapping_option(value, OPTION, "{video: data/probe_video.jsonl}")
    if value is None:
        return None
    problems = []
    for name, path in value.items():
        if not re.fullmatch(r"[A-Za-z0-9_-]+", str(name)):
            problems.append(f"{OPTION}: name {name!r}: letters, digits, '_' and '-' only (it becomes a metric name)")
        elif not isinstance(path, str) or not Path(path).is_file():
            problems.append(f"{OPTION}: {name}: {path!r} does not exist (a records JSONL of held-out questions)")
    if problems:
        raise UserError(problems)
    return {str(k): str(v) for k, v in value.items()}


def probe_series(history: list[dict], reward: str = "accuracy") -> dict[str, list[tuple[int, float]]]:
    """Per probe: (step, mean of the first reward whose name contains `reward`) from a log history."""
    series: dict[str, list[tuple[int, float]]] = {}
    for entry in history:
        for key, value in entry.items():
            match = PROBE_KEY.match(key)
            if match and reward in match["reward"] and "partial" not in match["reward"] and value is not None \
                    and "step" in entry:
                series.setdefault(match["name"], []).append((int(entry["step"]), float(value)))
    return series
