"""`hs-rl demo`: the whole recipe in minutes on a CPU — tiny model, sample data, three chained GRPO stages.

Everything is built offline if missing (model, sample media, per-stage JSONL), so the command works on a
fresh machine and, run again after a kill, finishes the same run (done stages skipped, the unfinished one
resumed from its newest complete checkpoint).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from hs_rl.grpo.export import FINAL_DIR

# stage name -> record modality it trains on (the recipe's order)
STAGE_MODALITIES = {"stage1_video": "video", "stage2_audio": "audio", "stage3_video_audio": "video_audio"}
TINY_PIPELINE = Path(__file__).resolve().parents[2] / "stages" / "tiny" / "pipeline.yaml"


@dataclass
class DemoArguments:
    """Options of `hs-rl demo`."""

    output_dir: str = field(default="experiments/tiny", metadata={"help": "Where the model, data and runs go."})
    pipeline: str = field(default=str(TINY_PIPELINE), metadata={"help": "The tiny pipeline YAML to run."})
    override: list[str] = field(default_factory=list, metadata={
        "help": "Passed to the pipeline: KEY=VALUE or STAGE.KEY=VALUE (e.g. stage1_video.max_steps=2)."})
    evaluate: bool = field(default=True, metadata={
        "help": "Answer the sample benchmark with the base model and each stage's model, and score them."})
    family: str = field(default="qwen2_5_omni", metadata={
        "help": "Model family of the tiny model: qwen2_5_omni or qwen3_omni (its default output_dir is "
                "experiments/tiny_qwen3_omni)."})

    def __post_init__(self):
        if self.family != "qwen2_5_omni" and self.output_dir == "experiments/tiny":
            self.output_dir = f"experiments/tiny_{self.family}"  # never reuse another family's tiny model


def prepare_inputs(root: Path, family: str = "qwen2_5_omni") -> tuple[Path, dict[str, Path]]:
    """Tiny model of `family`, sample data and one JSONL per stage (records filtered by modality), built only if
    missing; a tiny model of another family already in ROOT/model is an error, not silently reused."""
    from hs_rl.data.convert import convert_file
    from hs_rl.data.records import write_records
    from hs_rl.tools.sample_data import make_sample_data
    from hs_rl.tools.tiny_model import make_tiny_model

    from hs_rl.grpo.families import family_of_dir

    model = Path(make_tiny_model(root / "model", family=family)["full"])  # reused as is when already complete
    if family_of_dir(model).name != family:
        raise ValueError(f"{model} holds a {family_of_dir(model).name} tiny model, not {family}: pick another "
                         f"--output_dir")
    data = make_sample_data(root / "data")
    datasets = {name: root / "data" / f"{name}.jsonl" for name in STAGE_MODALITIES}
    if not all(p.is_file() for p in datasets.values()):
        records = convert_file(data["train_json"], media_root=data["media_root"])
        for name, modality in STAGE_MODALITIES.items():
            chosen = [r for r in records if r.modality == modality]
            if not chosen:
                raise ValueError(f"the sample training data has no {modality} records for {name}")
            write_records(chosen, datasets[name])  # atomic: a kill leaves no half dataset
    return model, datasets


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def stage_summary(stage_dir: Path) -> dict:
    """Steps and mean reward/format/accuracy over a stage's logged steps, first and last step."""
    history_file = stage_dir / "log_history.json"
    if not history_file.is_file():
        return {"status": "not run"}
    steps = [h for h in json.loads(history_file.read_text()) if "reward" in h]

    def column(fragment: str) -> list[float]:
        key = next((k for h in steps for k in h if k.startswith("rewards/") and fragment in k and k.endswith("/mean")
                    and "partial" not in k), None)
        return [h[key] for h in steps if key in h] if key else []

    rewards = [h["reward"] for h in steps]
    formats, accuracies = column("format"), column("accuracy")
    return {"status": "done" if (stage_dir / "STAGE_DONE.json").is_file() else "unfinished",
            "steps": len(steps), "reward": _mean(rewards), "format": _mean(formats), "accuracy": _mean(accuracies),
            "reward_first": rewards[0] if rewards else None, "reward_last": rewards[-1] if rewards else None}


def format_summary(root: Path, names: list[str]) -> str:
    """One screen: per stage, where it is and what it earned."""
    def f(value) -> str:
        return "–" if value is None else f"{value:.3f}"

    lines = [f"{'stage':<20} {'status':<10} {'steps':>5} {'reward':>7} {'format':>7} {'accuracy':>8} "
             f"{'first→last reward':>18}"]
    for name in names:
        s = stage_summary(root / name)
        lines.append(f"{name:<20} {s['status']:<10} {s.get('steps', 0):>5} {f(s.get('reward')):>7} "
                     f"{f(s.get('format')):>7} {f(s.get('accuracy')):>8} "
                     f"{f(s.get('reward_first')) + '→' + f(s.get('reward_last')):>18}")
    return "\n".join(lines)


def evaluate_models(root: Path, models: dict[str, Path]) -> Path:
    """The sample benchmark answered by each model (resumable), scored side by side into ROOT/report."""
    from hs_rl.eval.evaluate import EvalArguments, evaluate
    from hs_rl.eval.scoring import ScoreArguments, run_score

    data = root / "data"
    results = []
    for label, model in models.items():
        results.append(evaluate(EvalArguments(
            model=str(model), data=[str(data / "HumanSense_VQA.json"), str(data / "HumanSense_AQA.json")],
            out=str(root / "eval" / f"{label}.jsonl"), media_root=str(data), label=label, max_new_tokens=24,
            batch_size=8, video_max_frames=4, video_max_pixels=25088)))
    run_score(ScoreArguments(results=[str(p) for p in results], out=str(root / "report"), labels=list(models)))
    return root / "report"


def run_demo(args: DemoArguments) -> int:
    """Build what is missing, run the tiny pipeline, then say where everything is and how it went."""
    from hs_rl.pipeline import PipelineArguments, load_pipeline, run_pipeline

    root = Path(args.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    print(f"[demo] preparing the tiny {args.family} model and sample data under {root}", flush=True)
    model, datasets = prepare_inputs(root, args.family)
    spec = load_pipeline(args.pipeline)
    names = [s.name for s in spec.stages]
    overrides = [f"{name}.dataset={datasets[name]}" for name in names if name in datasets] + list(args.override)
    code = run_pipeline(PipelineArguments(pipeline=args.pipeline, output_dir=str(root),
                                          model_name_or_path=str(model), override=overrides))
    print("\n[demo] summary (means over logged steps)")
    print(format_summary(root, names))
    print(f"\nlogs:        {root}/<stage>/train.log, tensorboard: tensorboard --logdir {root}")
    print(f"completions: {root}/<stage>/completions.jsonl")
    print("models:      " + ", ".join(str(root / n / FINAL_DIR) for n in names))
    if code:
        print("[demo] a stage failed; run the same command again to resume where it stopped")
        return code
    if args.evaluate:
        print("\n[demo] answering the sample benchmark with the base model and each stage's model", flush=True)
        models = {"base": model, **{n: root / n / FINAL_DIR for n in names}}
        report = evaluate_models(root, models)
        print(f"benchmark:   {report / 'report.md'} (scores.json, tasks.png); results in {root / 'eval'}")
    return 0
