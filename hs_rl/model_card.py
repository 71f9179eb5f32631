"""The model card of a finished stage, OUTPUT_DIR/README.md: what hs-rl trained, from what, on what, how.

TRL writes its own card there at every checkpoint; it names the base model only when that is a hub id (a local
folder, as every hs-rl input is, reads "fine-tuned version of [None]"), and knows nothing of the stage's data or
rewards. This one replaces it once the stage has exported `final/`.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for package in ("hs-rl", "trl", "transformers", "torch", "accelerate", "deepspeed", "peft"):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            continue
    return ", ".join(parts)


def _model_type(path: str) -> str:
    try:
        return json.loads((Path(path) / "config.json").read_text(encoding="utf-8")).get("model_type") or "?"
    except (OSError, ValueError):
        return "?"


def model_card(data_args, config, model_args) -> str:
    """The Markdown of the card (numbers read from OUTPUT_DIR/log_history.json and the dataset)."""
    from hs_rl.data.records import load_records

    output_dir = Path(config.output_dir)
    try:
        history = json.loads((output_dir / "log_history.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        history = []
    steps = max((h.get("step", 0) for h in history), default=0)
    try:
        counts = Counter(r.modality for r in load_records(data_args.dataset))
        data = f"{sum(counts.values())} records ({', '.join(f'{m} {n}' for m, n in sorted(counts.items()))})"
    except (OSError, ValueError, TypeError):
        data = "records not readable now"
    weights = config.reward_weights or [1.0] * len(config.reward_funcs)
    rewards = ", ".join(f"`{spec}` × {w:g}" for spec, w in zip(config.reward_funcs, weights))
    model = model_args.model_name_or_path
    return "\n".join([
        "---",
        "library_name: transformers",
        f"tags: [hs-rl, grpo, trl, {_model_type(model)}]",
        "---",
        "",
        f"# {output_dir.name}: one GRPO stage trained with hs-rl",
        "",
        f"- **Trained from:** `{model}` (model_type `{_model_type(model)}`)",
        f"- **Data:** `{data_args.dataset}`: {data}",
        f"- **Steps:** {steps} ({config.num_generations} completions per prompt, learning rate "
        f"{config.learning_rate:g}, {getattr(config.lr_scheduler_type, 'value', config.lr_scheduler_type)} schedule, "
        f"loss `{config.loss_type}`, beta {config.beta:g})",
        f"- **Rewards:** {rewards}",
        "- **Model:** `final/` holds the complete Omni model (the trained thinker with the input model's talker and "
        "speech decoder); `from_pretrained` loads it and the next stage trains from it. `checkpoint-N/` resume "
        "the run; `log_history.json`, `completions.jsonl` and `runs/` hold its metrics.",
        f"- **Software:** {_versions()}",
        "",
    ])


def write_model_card(data_args, config, model_args) -> Path:
    """Write OUTPUT_DIR/README.md (main process only), replacing TRL's."""
    from hs_rl.atomic_files import atomic_write

    path = Path(config.output_dir) / "README.md"
    atomic_write(path, model_card(data_args, config, model_args))
    return path
