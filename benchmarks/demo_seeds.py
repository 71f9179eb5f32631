"""`hs-rl demo` on several curriculum seeds, one after the other, and the per-seed table of its targets.

    python benchmarks/demo_seeds.py                      # seeds 0-9 into experiments/seeds<N>_sweep
    python benchmarks/demo_seeds.py --seeds 0 3 --tag try --override stage3_video_audio.max_steps=100
    python benchmarks/demo_seeds.py --report_only        # the table of runs already there

Each run is a fresh `hs-rl demo --seed N --output_dir experiments/seeds<N>_<tag>` (a finished one is not run again:
the demo skips done stages, evaluates and prints its table). Runs are sequential on purpose: the demo is timed
against a 4-minute budget on 2 cores, and two at once would each take twice as long. The table gives, per seed,
the held-out numbers the targets judge (hs_rl.tools.demo.missed_targets), the misses and the wall time.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hs_rl.tools.demo import missed_targets  # noqa: E402

COLUMNS = [("base p(right) v/a/va", None), ("s1 video", ("stage1_video", "video")),
           ("s2 audio", ("stage2_audio", "audio")), ("s2 video", ("stage2_audio", "video")),
           ("s3 video", ("stage3_video_audio", "video")), ("s3 audio", ("stage3_video_audio", "audio")),
           ("s3 v+a", ("stage3_video_audio", "video_audio"))]


def run_seed(seed: int, root: Path, overrides: list[str], family: str | None) -> float:
    """One demo run; its wall time in seconds (written beside its table as wall_s.txt)."""
    command = [sys.executable, "-m", "hs_rl.cli", "demo", "--seed", str(seed), "--output_dir", str(root)]
    command += [f"--override={item}" for item in overrides]
    command += ["--family", family] if family else []
    root.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with open(root / "demo.log", "a", encoding="utf-8") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    wall = time.time() - started
    (root / "wall_s.txt").write_text(f"{wall:.0f}\n")
    if code:
        print(f"seed {seed}: hs-rl demo exited {code} (log: {root / 'demo.log'})", flush=True)
    return wall


def row(seed: int, root: Path) -> tuple[str, bool | None]:
    """One line of the table and whether every target is met (None: no table)."""
    table_file = root / "report" / "learning.json"
    wall = (root / "wall_s.txt").read_text().strip() if (root / "wall_s.txt").is_file() else "–"
    if not table_file.is_file():
        return f"{seed:>4}  (no learning table in {root})", None
    table = json.loads(table_file.read_text())
    base = table["right_letter_probability"]["base"]
    cells = ["/".join(f"{base[k]:.2f}" for k in ("video", "audio", "video_audio"))]
    for _, key in COLUMNS[1:]:
        value = table["accuracy"].get(key[0], {}).get(key[1])
        cells.append("–" if value is None else f"{value:.2f}")
    formats = [c.get("format") for c in table["accuracy"].values() if c.get("format") is not None]
    missed = missed_targets(table)
    verdict = "all met" if not missed else f"missed {len(missed)}: " + "; ".join(m.split(":")[0] for m in missed)
    line = (f"{seed:>4}  {cells[0]:>20}" + "".join(f"{c:>9}" for c in cells[1:])
            + f"{min(formats) if formats else float('nan'):>8.2f}{wall:>7}  {verdict}")
    return line, not missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--tag", default="sweep", help="Runs go to experiments/seeds<N>_<tag>.")
    parser.add_argument("--experiments", default=str(REPO / "experiments"))
    parser.add_argument("--override", action="append", default=[], help="Passed to `hs-rl demo --override`.")
    parser.add_argument("--family", default=None, help="qwen2_5_omni (default) or qwen3_omni.")
    parser.add_argument("--report_only", action="store_true", help="Only print the table of the runs there.")
    args = parser.parse_args()
    roots = {seed: Path(args.experiments) / f"seeds{seed}_{args.tag}" for seed in args.seeds}
    if not args.report_only:
        for seed, root in roots.items():
            print(f"seed {seed}: hs-rl demo -> {root}", flush=True)
            wall = run_seed(seed, root, args.override, args.family)
            print(f"{row(seed, root)[0]}  ({wall:.0f} s)", flush=True)
    header = (f"{'seed':>4}  {COLUMNS[0][0]:>20}" + "".join(f"{name:>9}" for name, _ in COLUMNS[1:])
              + f"{'format':>8}{'wall s':>7}  targets")
    print("\n" + header)
    results = []
    for seed, root in roots.items():
        line, met = row(seed, root)
        print(line)
        results.append(met)
    print(f"\n{sum(bool(m) for m in results)} of {len(results)} seeds meet every target "
          f"(base at chance by the right letter's probability; stage 1 video >= 0.9; stage 2 audio >= 0.9 and "
          f"video >= 0.85; stage 3 every family >= 0.9; format >= 0.95)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
