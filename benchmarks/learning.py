"""Does the media reach the gradient? Stage 1 of the demo curriculum trained twice from the same base, seed and steps.

    python benchmarks/learning.py            # under 8 minutes on 2 CPU cores
    python benchmarks/learning.py --workdir experiments/demo   # after `hs-rl demo`: from its very base, and its
                                             # report/learning.json gets the `plain_trl` row (held-out video)

- `ours` — `OmniGRPOTrainer` as `hs-rl train` builds it (stages/demo/stage1_video.yaml).
- `plain_trl` — the same trainer with TRL's own `GRPOTrainer._get_per_token_logps_and_entropies` put back:
  the minimal omni override of benchmarks/grpo_step.py's `trl` mode, where generation sees the video (the
  rollouts are the same kind as ours) but the loss forward is TRL's, which drops video and audio silently
  (TRL 1.16 rebuilds multimodal inputs from images only). Everything else — data, rewards, settings — is shared.

Both start from the demo's `base` model (the `demo` preset after the format warm-up, answering at chance).
Writes `learning.json` and `learning.png` (training accuracy against step, both runs; held-out accuracy at
the end) into the work folder and prints, last, the held-out video accuracy after training:
    learning_ours: X
    learning_plain_trl: Y
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny tensors: one thread per process (its runs inherit it)

STAGE = ROOT / "stages" / "demo" / "stage1_video.yaml"
MODES = ("ours", "plain_trl")


def plain_trl_loss_forward(trainer) -> None:
    """Give `trainer` TRL's own log-prob forward (input ids only: the media never reach the loss)."""
    import types

    from trl import GRPOTrainer

    trainer._get_per_token_logps_and_entropies = types.MethodType(
        GRPOTrainer._get_per_token_logps_and_entropies, trainer)


def heldout_accuracy(trainer, data_args, data_dir: Path, family: str = "video") -> float:
    """Greedy accuracy of the trainer's current model on the family's held-out curriculum questions."""
    from hs_rl.omni.inputs import thinker_of
    from hs_rl.tools.curriculum import heldout_accuracy as accuracy

    return accuracy(thinker_of(trainer.model), trainer.processing_class, data_args, data_dir, family,
                    trainer.args.max_completion_length)


def prepare(workdir: Path, seed: int) -> tuple[Path, Path, Path]:
    """The demo's base model, the stage-1 records and the curriculum folder (built once, reused)."""
    from hs_rl.tools.demo import make_base, prepare_inputs, stage_settings

    model, datasets = prepare_inputs(workdir, seed=seed)
    base = make_base(workdir, model, datasets, stage_settings(str(ROOT / "stages" / "demo" / "pipeline.yaml")), 60)
    return base, datasets["stage1_video"], workdir / "data" / "curriculum"


def child(args) -> None:
    """Train one mode in this process and write its result JSON."""
    from hs_rl.commands import build_parser
    from hs_rl.train import build_trainer

    workdir = Path(args.workdir)
    base, dataset, data_dir = prepare(workdir, args.seed)
    out = workdir / f"run-{args.mode}"
    parser = build_parser("train")
    data_args, config, model_args = parser.parse_args_and_config([
        "--config", str(STAGE), "--model_name_or_path", str(base), "--ref_model_name_or_path", str(base),
        "--dataset", str(dataset),
        "--output_dir", str(out), "--save_strategy", "no", "--report_to", "none", "--completions_log", "false",
        "--resume_from_checkpoint", "none", *(["--max_steps", str(args.steps)] if args.steps else []),
        "--probe_datasets", "", "--eval_strategy", "no", "--eval_on_start", "false"])  # no probes: the held-out
    # questions are measured after training, the same way for both modes
    trainer = build_trainer(data_args, config, model_args)
    if args.mode == "plain_trl":
        plain_trl_loss_forward(trainer)
    before = heldout_accuracy(trainer, data_args, data_dir=data_dir)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    after = heldout_accuracy(trainer, data_args, data_dir=data_dir)
    history = [h for h in trainer.state.log_history if "reward" in h]
    key = next(k for k in history[0] if k.startswith("rewards/accuracy") and k.endswith("/mean"))
    Path(args.json).write_text(json.dumps({
        "mode": args.mode, "steps": [h["step"] for h in history], "train_accuracy": [h[key] for h in history],
        "heldout_before": before, "heldout_after": after, "train_seconds": seconds,
        "settings": {"stage": str(STAGE.relative_to(ROOT)), "max_steps": config.max_steps, "seed": config.seed,
                     "learning_rate": config.learning_rate, "beta": config.beta,
                     "prompts_per_step": config.per_device_train_batch_size // config.num_generations,
                     "num_generations": config.num_generations}}, indent=1))


def plot(results: dict, path: Path) -> None:
    """Both runs' training accuracy (a trailing mean over 5 steps) against step, with the held-out end points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    names = {"ours": "OmniGRPOTrainer (media in the loss)", "plain_trl": "TRL GRPOTrainer loss (media dropped)"}
    for mode, result in results.items():
        values = result["train_accuracy"]
        smooth = [sum(values[max(0, i - 4):i + 1]) / len(values[max(0, i - 4):i + 1]) for i in range(len(values))]
        line, = ax.plot(result["steps"], smooth, label=f"{names[mode]}: held-out {result['heldout_after']:.2f}")
        ax.scatter([result["steps"][-1]], [result["heldout_after"]], color=line.get_color(), marker="*", s=90,
                   zorder=3)
    ax.axhline(0.25, color="grey", linestyle="--", linewidth=1, label="chance (4 options)")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("GRPO step (stage 1, video family)")
    ax.set_ylabel("accuracy")
    ax.set_title("Same base, data, seed and steps", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=str(ROOT / "experiments" / "bench_learning"))
    parser.add_argument("--seed", type=int, default=0, help="curriculum seed")
    parser.add_argument("--steps", type=int, default=0, help="GRPO steps (default: the stage YAML's max_steps)")
    parser.add_argument("--png", default=None, help="also copy the picture here (e.g. docs/learning.png)")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mode:
        child(args)
        return 0
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = {}
    for mode in MODES:  # one process each, so neither run inherits the other's random state or caches
        path = workdir / f"result-{mode}.json"
        command = [sys.executable, __file__, "--mode", mode, "--workdir", str(workdir), "--seed", str(args.seed),
                   "--steps", str(args.steps), "--json", str(path)]
        with open(workdir / f"{mode}.log", "w") as log:
            if subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode:
                raise SystemExit(f"mode {mode} failed; see {workdir / f'{mode}.log'}")
        results[mode] = json.loads(path.read_text())
        r = results[mode]
        print(f"{mode:10s} held-out video accuracy {r['heldout_before']:.3f} -> {r['heldout_after']:.3f} "
              f"after {r['steps'][-1]} steps ({r['train_seconds']:.0f} s training)", flush=True)
    summary = {"results": results, "wall_seconds": time.perf_counter() - started}
    (workdir / "learning.json").write_text(json.dumps(summary, indent=1))
    plot(results, workdir / "learning.png")
    if args.png:
        plot(results, Path(args.png))
    demo_table = workdir / "report" / "learning.json"
    if demo_table.is_file():  # run on a demo's folder (--workdir experiments/demo): its table gets the row
        table = json.loads(demo_table.read_text())
        table.setdefault("accuracy", {})["plain_trl"] = {"video": results["plain_trl"]["heldout_after"]}
        demo_table.write_text(json.dumps(table, indent=2) + "\n")
        print(f"plain_trl row added to {demo_table}")
    print(f"picture: {workdir / 'learning.png'}; json: {workdir / 'learning.json'}; "
          f"{summary['wall_seconds']:.0f} s in all")
    print(f"learning_ours: {results['ours']['heldout_after']:.3f}")
    print(f"learning_plain_trl: {results['plain_trl']['heldout_after']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
