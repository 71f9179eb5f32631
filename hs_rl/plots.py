"""Training curves of a run, drawn from its `log_history.json`: `hs-rl plot OUTPUT_DIR [OUTPUT_DIR ...]`.

One PNG per stage at `<stage output_dir>/report/curves.png` (a stable path other commands can name): the
reward, each reward's mean, KL, completion length and clip ratio against the step, and, for a stage with
`probe_datasets` (hs_rl.data.probes), each probe's accuracy at every evaluation: an earlier skill lost shows there.
A pipeline's root is accepted too: every stage folder under it that has a `log_history.json` gets its picture.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

CURVES = Path("report") / "curves.png"
HISTORY = "log_history.json"


def curves_path(stage_dir: str | Path) -> Path:
    """Where a stage's curves picture lives."""
    return Path(stage_dir) / CURVES


def _series(history: list[dict], key: str) -> tuple[list[float], list[float]]:
    points = [(h["step"], h[key]) for h in history if key in h and "step" in h and h[key] is not None]
    return [p[0] for p in points], [p[1] for p in points]


def _smooth(values: list[float], window: int) -> list[float]:
    """Trailing mean over `window` points (the raw values are drawn faintly behind it)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_history(history: list[dict], path: str | Path, title: str = "") -> Path:
    """Draw the five panels of one stage's log history into `path` (six with probes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h for h in history if "reward" in h or "loss" in h]
    reward_keys = sorted({k for h in steps for k in h if k.startswith("rewards/") and k.endswith("/mean")})
    clip_keys = sorted({k for h in steps for k in h if k.startswith("clip_ratio/") and k.endswith("mean")}
                       | ({"clip_ratio"} if any("clip_ratio" in h for h in steps) else set()))
    first = ("reward", ["reward"]) if any("reward" in h for h in steps) else ("loss", ["loss"])  # e.g. a warm-up
    panels = [first, ("per-reward means", reward_keys), ("KL to reference", ["kl"]),
              ("completion length (tokens)", ["completions/mean_length"]), ("clip ratio", clip_keys)]
    window = max(1, len(steps) // 20)
    from hs_rl.data.probes import probe_series

    probes = probe_series(history)
    fig, axes = plt.subplots(1, len(panels) + bool(probes), figsize=(4.0 * (len(panels) + bool(probes)), 3.2))
    if probes:  # evaluations are few (every eval_steps): points joined, not smoothed
        ax = axes[-1]
        for name, points in probes.items():
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=name)
        ax.set_title("held-out probes: accuracy", fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax, (name, keys) in zip(axes, panels):
        for key in keys:
            x, y = _series(steps, key)
            if not x:
                continue
            label = key.removeprefix("rewards/").removesuffix("/mean")
            line, = ax.plot(x, _smooth(y, window), label=label)
            if window > 1:
                ax.plot(x, y, color=line.get_color(), alpha=0.25, linewidth=0.8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(keys) > 1 and ax.lines:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_stage(stage_dir: str | Path) -> Path:
    """`<stage_dir>/report/curves.png` from `<stage_dir>/log_history.json`."""
    stage_dir = Path(stage_dir)
    history = json.loads((stage_dir / HISTORY).read_text(encoding="utf-8"))
    return plot_history(history, curves_path(stage_dir), title=stage_dir.name)


def stage_dirs(folder: str | Path) -> list[Path]:
    """The folder itself when it is a stage (has a log history), else its stage subfolders that have one."""
    folder = Path(folder)
    if (folder / HISTORY).is_file():
        return [folder]
    return sorted(p.parent for p in folder.glob(f"*/{HISTORY}"))


@dataclass
class PlotArguments:
    """Options of `hs-rl plot OUTPUT_DIR [OUTPUT_DIR ...]`."""

    output_dirs: list[str] = field(default_factory=list, metadata={
        "help": "Stage output folders (with log_history.json) or pipeline roots holding them."})


def run_plot(args: PlotArguments) -> int:
    """CLI entry: draw every stage's curves and say where they went."""
    found = [d for folder in args.output_dirs for d in stage_dirs(folder)]
    if not found:
        print(f"hs-rl plot: no {HISTORY} in {', '.join(args.output_dirs) or '(no folder given)'} or its subfolders")
        return 1
    for stage_dir in found:
        print(f"{stage_dir.name}: {plot_stage(stage_dir)}")
    return 0
