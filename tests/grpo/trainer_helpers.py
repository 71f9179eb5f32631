"""Building real trainers on the tiny model for the trainer tests (no mocks: real processor, media, TRL)."""
from __future__ import annotations

from pathlib import Path

from hs_rl.data.arguments import DataArguments
from hs_rl.data.convert import convert_file
from hs_rl.data.records import Record, write_records
from hs_rl.grpo.config import OmniGRPOConfig, OmniModelConfig


def parameter_parts(model) -> dict[str, str]:
    """Each parameter name of `model` (a thinker, or what wraps it) -> "language", "vision", "audio" or "" (the
    head), by module, whatever names the transformers release gives them (`model.language_model.…` on 5.23,
    `model.…` on 5.20)."""
    from hs_rl.omni.families import family_of
    from hs_rl.omni.inputs import thinker_of

    thinker = thinker_of(model)
    family = family_of(thinker)
    modules = {"language": family.language_model(thinker), **family.towers(thinker)}
    part_of = {id(p): part for part, module in modules.items() for p in module.parameters()}
    return {name: part_of.get(id(p), "") for name, p in model.named_parameters()}


def sample_records(sample_data: dict[str, Path]) -> list[Record]:
    """The sample training JSON converted with the recipe's routing."""
    return convert_file(sample_data["train_json"], media_root=sample_data["media_root"])


def interleaved(records: list[Record], modalities=("video", "audio", "video_audio"), count: int = 12) -> list[Record]:
    """Records cycling through the modalities, so that any few consecutive ones mix them."""
    pools = {m: [r for r in records if r.modality == m] for m in modalities}
    out = []
    for i in range(count):
        pool = pools[modalities[i % len(modalities)]]
        out.append(pool[(i // len(modalities)) % len(pool)])
    return out


def stage_args(model_dir: Path, records: list[Record], out: Path, **overrides):
    """(DataArguments, OmniGRPOConfig, OmniModelConfig) for a tiny CPU stage, with overrides by field name."""
    out.mkdir(parents=True, exist_ok=True)
    data_file = out / "train.jsonl"
    write_records(records, data_file)
    data = dict(dataset=str(data_file), video_max_frames=4, video_max_pixels=25088, video_min_pixels=3136)
    config = dict(output_dir=str(out), loss_type="grpo", beta=0.0, num_generations=2, per_device_train_batch_size=4,
                  max_completion_length=8, learning_rate=1e-2, max_steps=1, use_cpu=True, bf16=False,
                  report_to=[], seed=0, save_strategy="no", logging_steps=1, shuffle_dataset=False,
                  reward_funcs=["accuracy", str(Path(__file__).parent / "varying_reward.py") + ":char_diversity"],
                  gradient_checkpointing=False,
                  dataloader_num_workers=0)
    model = dict(model_name_or_path=str(model_dir), dtype="float32")
    for key, value in overrides.items():
        target = data if key in DataArguments.__dataclass_fields__ else (
            model if key in OmniModelConfig.__dataclass_fields__ and key not in OmniGRPOConfig.__dataclass_fields__
            else config)
        target[key] = value
    return DataArguments(**data), OmniGRPOConfig(**config), OmniModelConfig(**model)
