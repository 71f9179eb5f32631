"""`hs-rl demo`: the whole recipe in minutes on a CPU — tiny model, sample data, three chained GRPO stages.

Everything is built offline if missing (model, sample media, per-stage JSONL), so the command works on a
fresh machine and, run again after a kill, finishes the same run (done stages skipped, the unfinished one
resumed from its newest complete checkpoint).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from hs_rl.choices import check_choices
from hs_rl.omni.export import FINAL_DIR
from hs_rl.omni.families import FamilyName

# stage name -> record modality (and curriculum family) it trains on, in the recipe's order
STAGE_MODALITIES = {"stage1_video": "video", "stage2_audio": "audio", "stage3_video_audio": "video_audio"}
DEMO_PIPELINE = Path(__file__).resolve().parents[2] / "stages" / "demo" / "pipeline.yaml"
TINY_PIPELINE = Path(__file__).resolve().parents[2] / "stages" / "tiny" / "pipeline.yaml"
DEMO_PRESET = "demo"
# targets of the learning table (docs/demo.md, "The table it ends with"): (model, family) -> lowest held-out accuracy
TARGETS = {("stage1_video", "video"): 0.9, ("stage2_audio", "audio"): 0.9, ("stage2_audio", "video"): 0.85,
           ("stage3_video_audio", "video"): 0.9, ("stage3_video_audio", "audio"): 0.9,
           ("stage3_video_audio", "video_audio"): 0.9}
# the base is at chance when the probability it gives the right letter is within this of chance (1 in 4)
BASE_MARGIN = 0.15
FORMAT_TARGET = 0.95  # share of well-formed held-out answers, every trained model
TRAINED_MODELS = ("base", *STAGE_MODALITIES)
# held-out questions per family each stage is measured on while it trains (`probe_datasets`): the first ones of the
# family's held-out set, two per class
PROBE_SIZE = 8
# what the table's first block says a right-letter probability means
KNOWS = 0.8


@dataclass
class DemoArguments:
    """Options of `hs-rl demo`."""

    output_dir: str = field(default="experiments/demo", metadata={"help": "Where the model, data and runs go."})
    pipeline: str = field(default=str(DEMO_PIPELINE), metadata={"help": "The demo pipeline YAML to run."})
    override: list[str] = field(default_factory=list, metadata={
        # "extend": `--override A=1 --override B=2` keeps both (argparse's default kept only the last, silently)
        "action": "extend",
        "help": "Passed to the pipeline: KEY=VALUE or STAGE.KEY=VALUE (e.g. stage1_video.max_steps=2)."})
    evaluate: bool = field(default=True, metadata={
        "help": "Answer the held-out curriculum questions with the base model and each stage's model, and score."})
    seed: int = field(default=0, metadata={"help": "Seed of the curriculum (another seed: a fresh set of clips)."})
    preset: str = field(default=DEMO_PRESET, metadata={"help": "Model preset of `hs-rl make-tiny-model`."})
    warmup_steps: int = field(default=60, metadata={
        "help": "Steps of the format warm-up (2 prompts a step, each with every answer letter) that makes the "
                "`base` model."})
    family: FamilyName = field(default="qwen2_5_omni", metadata={
        "help": "Model family of the demo model: qwen2_5_omni or qwen3_omni (its default output_dir is "
                "experiments/demo_qwen3_omni)."})

    def __post_init__(self):
        check_choices(self)
        if self.family != "qwen2_5_omni" and self.output_dir == "experiments/demo":
            self.output_dir = f"experiments/demo_{self.family}"  # never reuse another family's model


def prepare_inputs(root: Path, seed: int = 0, preset: str = DEMO_PRESET,
                   family: str = "qwen2_5_omni") -> tuple[Path, dict[str, Path]]:
    """Model of `family`, curriculum and one JSONL per stage (records routed by task type), built only if missing;
    a model of another family already in ROOT/model is an error, not silently reused."""
    from hs_rl.data.convert import convert_file
    from hs_rl.data.records import write_records
    from hs_rl.omni.families import family_of_dir
    from hs_rl.tools.curriculum import heldout_records, make_curriculum
    from hs_rl.tools.tiny_model import make_tiny_model

    model = Path(make_tiny_model(root / "model", preset=preset, family=family)["full"])  # reused when complete
    if family_of_dir(model).name != family:
        raise ValueError(f"{model} holds a {family_of_dir(model).name} model, not {family}: pick another "
                         f"--output_dir")
    data = make_curriculum(root / "data" / "curriculum", seed=seed)
    datasets = {name: root / "data" / f"{name}.jsonl" for name in STAGE_MODALITIES}
    for family, path in probe_paths(root).items():
        if not path.is_file():
            write_records(heldout_records(data["root"], family)[:PROBE_SIZE], path)
    if not all(p.is_file() for p in datasets.values()):
        records = convert_file(data["train_json"], media_root=data["root"])
        for name, modality in STAGE_MODALITIES.items():
            chosen = [r for r in records if r.modality == modality]
            if not chosen:
                raise ValueError(f"the curriculum has no {modality} records for {name}")
            write_records(chosen, datasets[name])  # atomic: a kill leaves no half dataset
    return model, datasets


def probe_paths(root: Path) -> dict[str, Path]:
    """Each family's probe: a few held-out questions the stages are measured on while they train."""
    return {family: root / "data" / f"probe_{family}.jsonl" for family in STAGE_MODALITIES.values()}


def stage_settings(pipeline: str) -> dict:
    """The first stage's options, its `base:` chain included (prompt and media settings the warm-up and the
    evaluation share with training)."""
    from hs_rl.commands import read_config
    from hs_rl.pipeline import load_pipeline

    return read_config(load_pipeline(pipeline).stages[0].config)


def make_base(root: Path, model: Path, datasets: dict[str, Path], settings: dict, steps: int) -> Path:
    """The demo's `base`: the random model after the format warm-up on every stage's prompts (random letters)."""
    from hs_rl.data.records import load_records
    from hs_rl.tools.warmup import format_warmup

    records = [r for path in datasets.values() for r in load_records(path)]
    return format_warmup(model, records, root / "base", steps=steps, learning_rate=1e-2,
                         data_args=_data_arguments(settings))


def _data_arguments(settings: dict):
    from hs_rl.data.arguments import DataArguments

    keys = {"system_prompt", "think", "video_max_frames", "video_max_pixels", "video_min_pixels", "video_fps"}
    return DataArguments(**{k: v for k, v in settings.items() if k in keys})


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


def evaluate_models(root: Path, models: dict[str, Path], settings: dict | None = None,
                    data: dict[str, Path] | None = None) -> Path:
    """The held-out curriculum answered by each model (`hs-rl eval`, resumable), scored side by side
    (`hs-rl score`) into ROOT/report, asked the way the stages were trained (same prompt and media settings)."""
    from hs_rl.eval.evaluate import EvalArguments, evaluate
    from hs_rl.eval.scoring import ScoreArguments, run_score
    from hs_rl.tools.curriculum import curriculum_paths

    settings = settings or {}
    data = data or curriculum_paths(root / "data" / "curriculum")
    results = []
    for label, model in models.items():
        results.append(evaluate(EvalArguments(
            model=str(model), data=[str(data["heldout_vqa"]), str(data["heldout_aqa"])],
            out=str(root / "eval" / f"{label}.jsonl"), label=label,
            system_prompt=settings.get("system_prompt", ""), max_new_tokens=settings.get("max_completion_length", 20),
            batch_size=16, video_max_frames=settings.get("video_max_frames", 4),
            video_max_pixels=settings.get("video_max_pixels", 25088),
            video_min_pixels=settings.get("video_min_pixels", 3136))))
    run_score(ScoreArguments(results=[str(p) for p in results], out=str(root / "report"), labels=list(models)))
    return root / "report"


def learning_table(root: Path, models: dict[str, Path], settings: dict | None = None) -> dict:
    """`report/learning.json`: chance and, per model, held-out accuracy per curriculum family and format share,
    plus the probability it gives the right letter.

    accuracy = mean accuracy reward (the benchmark's scoring) on the family's held-out questions, greedy;
    format = share of answers that follow `<think>…</think><answer>…</answer>` (the format reward);
    right_letter_probability = mean probability of the right letter after `<answer>` (the chance check of the
    base, whose greedy pick among four near-equal letters is luck: see `right_letter_probabilities`).
    """
    from hs_rl.data.answers import score_answer
    from hs_rl.rewards.format import format_reward
    from hs_rl.tools.curriculum import CHANCE, FAMILIES, right_letter_probabilities

    labels = list(models)

    path = root / "report" / "learning.json"
    table = json.loads(path.read_text()) if path.is_file() else {}
    table["chance"] = {family: CHANCE for family in FAMILIES}
    accuracy = table.setdefault("accuracy", {})
    for label in labels:
        rows = [json.loads(line) for line in (root / "eval" / f"{label}.jsonl").read_text().splitlines() if line]
        cells = {}
        for family, task in FAMILIES.items():
            mine = [r for r in rows if r["task_type"] == task]
            scores = [score_answer(r["prediction"], r["answer"], r["question_type"], r["options"]) for r in mine]
            cells[family] = sum(scores) / len(scores) if scores else None
        formats = format_reward([r["prediction"] for r in rows])
        cells["format"] = sum(formats) / len(formats) if formats else None
        accuracy[label] = cells
    table.setdefault("right_letter_probability", {}).update(right_letter_probabilities(
        models, _data_arguments(settings or {}), root / "data" / "curriculum"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table, indent=2) + "\n")
    return table


FAMILY_COLUMNS = {"video": "video", "audio": "audio", "video_audio": "video+audio"}
LABELS = {"base": "base (after format warm-up)", "plain_trl": "stage1, TRL's loss (no media)"}


def reading(probability: float, chance: float) -> str:
    """What a right-letter probability says a model knows: `knows`, `chance` or `partly`."""
    if probability >= KNOWS:
        return "knows"
    return "chance" if abs(probability - chance) <= BASE_MARGIN else "partly"


def missed_targets(table: dict) -> list[str]:
    """Every target of the learning table a model misses, one line each (empty: all met).

    The base is judged by the right letter's probability (at chance: within BASE_MARGIN of 0.25; its greedy pick
    among four near-equal letters is luck), the stages by greedy held-out accuracy (TARGETS), every model by its
    share of well-formed answers (FORMAT_TARGET)."""
    missed = []
    right, accuracy = table["right_letter_probability"], table["accuracy"]
    for family, chance in table["chance"].items():
        if "base" in right and abs(right["base"][family] - chance) > BASE_MARGIN:
            missed.append(f"base {family}: right-letter probability {right['base'][family]:.2f}, not within "
                          f"{BASE_MARGIN} of chance {chance}")
    for (model, family), target in TARGETS.items():
        value = accuracy.get(model, {}).get(family)
        if value is None or value < target:
            missed.append(f"{model} {family}: accuracy {'–' if value is None else f'{value:.2f}'} < {target}")
    for model, cells in accuracy.items():
        if model in TRAINED_MODELS and (cells.get("format") is None or cells["format"] < FORMAT_TARGET):
            missed.append(f"{model} format: {cells.get('format')} < {FORMAT_TARGET}")
    return missed


def format_learning_table(table: dict) -> str:
    """The table `hs-rl demo` ends with: first what each model knows (from the probability it gives the right
    letter: what it samples, not luck of greedy ties), then greedy accuracy with `!` on a missed target, then the
    targets' verdict."""
    chance = table["chance"]
    right = table["right_letter_probability"]
    head = "".join(f"{name:>14}" for name in FAMILY_COLUMNS.values())
    lines = [f"what each model knows on held-out questions (probability of the right letter; chance "
             f"{chance['video']:.2f}; knows: >= {KNOWS})",
             f"{'':<32}{head}{'format':>9}"]
    for model, cells in right.items():
        fmt = table["accuracy"].get(model, {}).get("format")
        lines.append(f"{LABELS.get(model, model):<32}"
                     + "".join(f"{reading(cells[k], chance[k]) + ' ' + f'{cells[k]:.2f}':>14}" for k in FAMILY_COLUMNS)
                     + (f"{fmt:>9.2f}" if fmt is not None else f"{'–':>9}"))

    def cell(model: str, key: str) -> str:
        value = table["accuracy"][model].get(key)
        if value is None:
            return f"{'–':>14}"
        miss = (model, key) in TARGETS and value < TARGETS[(model, key)]
        return f"{value:>13.2f}{'!' if miss else ' '}"

    lines += ["", "greedy accuracy (what `hs-rl eval` scores; `!` marks a missed target)", f"{'':<32}{head}"]
    for model in table["accuracy"]:
        if model == "base":  # its greedy answers among four near-equal letters are luck: the first block says it
            continue
        lines.append(f"{LABELS.get(model, model):<32}" + "".join(cell(model, k) for k in FAMILY_COLUMNS))
    missed = missed_targets(table)
    lines += ["", "targets: every one met" if not missed else f"targets missed ({len(missed)}): " + "; ".join(missed)]
    return "\n".join(lines)


def run_demo(args: DemoArguments) -> int:
    """Build what is missing, warm the format up, run the demo pipeline, evaluate, print the learning table."""
    import os
    import shlex
    import time

    from hs_rl.commands import read_config
    from hs_rl.pipeline import PipelineArguments, load_pipeline, run_pipeline
    from hs_rl.plots import plot_stage

    started = time.time()
    # one torch thread per process unless the user says otherwise: the demo's tensors are tiny, and two threads on
    # two (often shared) cores made its steps several times slower; the stages' subprocesses inherit this
    if not os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():  # unset or empty (libgomp rejects empty too)
        os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    root = Path(args.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    print(f"[demo] preparing the {args.preset} {args.family} model and the curriculum under {root}", flush=True)
    model, datasets = prepare_inputs(root, seed=args.seed, preset=args.preset, family=args.family)
    settings = stage_settings(args.pipeline)
    print(f"[demo] format warm-up ({args.warmup_steps} steps, every answer letter alike) -> the base model",
          flush=True)
    base = make_base(root, model, datasets, settings, args.warmup_steps)
    spec = load_pipeline(args.pipeline)
    names = [s.name for s in spec.stages]
    overrides = [f"{name}.dataset={datasets[name]}" for name in names if name in datasets]
    # a stage anchoring its KL term to the warm-up's model names it by the default output_dir: point it at this run's
    overrides += [f"{s.name}.ref_model_name_or_path={base}" for s in spec.stages
                  if read_config(s.config).get("ref_model_name_or_path")]
    # the probes a stage YAML names (experiments/demo/data/probe_FAMILY.jsonl) are this run's
    probes = probe_paths(root)
    overrides += [f"{s.name}.probe_datasets=" + shlex.quote(json.dumps({name: str(probes[name]) for name in named}))
                  for s in spec.stages if (named := read_config(s.config).get("probe_datasets"))]
    overrides += list(args.override)
    code = run_pipeline(PipelineArguments(pipeline=args.pipeline, output_dir=str(root),
                                          model_name_or_path=str(base), override=overrides))
    print("\n[demo] summary (means over logged steps)")
    print(format_summary(root, names))
    for name in names:
        if (root / name / "log_history.json").is_file():
            plot_stage(root / name)
    print(f"\nlogs:        {root}/<stage>/train.log, tensorboard: tensorboard --logdir {root}")
    print(f"curves:      {root}/<stage>/report/curves.png")
    print(f"completions: {root}/<stage>/completions.jsonl")
    print("models:      " + ", ".join(str(root / n / FINAL_DIR) for n in names))
    if code:
        print("[demo] a stage failed; run the same command again to resume where it stopped")
        return code
    if args.evaluate:
        print("\n[demo] answering the held-out questions with the base model and each stage's model", flush=True)
        models = {"base": base, **{n: root / n / FINAL_DIR for n in names}}
        report = evaluate_models(root, models, settings)
        table = learning_table(root, models, settings)
        print(f"benchmark:   {report / 'report.md'} (scores.json, tasks.png); results in {root / 'eval'}")
        print(f"\n{format_learning_table(table)}\n(written to {report / 'learning.json'}; "
              f"{time.time() - started:.0f} s in all)")
    return 0
