"""A stage's final model as a full Omni folder of the base model's family: the trained thinker plus the base
model's other parts — Qwen2.5-Omni: talker, token2wav and `spk_dict.pt`; Qwen3-Omni: talker (with its code
predictor) and code2wav — so that the family's full class (`Qwen2_5OmniForConditionalGeneration`,
`Qwen3OmniMoeForConditionalGeneration`) `.from_pretrained(final)` works and the next stage trains from it.
Upstream users copied `spk_dict.pt` by hand; here it travels with every export.

The folder is built beside its destination, verified, then renamed into place: `final/` either does not exist
or is a complete, loadable model. A thinker-only base exports thinker-only (there is no talker to carry over).
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from hs_rl.atomic_files import atomic_write, fsync_dir
from hs_rl.omni.families import family_of_dir

logger = logging.getLogger(__name__)

EXPORT_MARKER = "hs_rl_export.json"
FINAL_DIR = "final"  # a stage's exported model: OUTPUT_DIR/final
ADAPTER_DIR = "final_adapter"  # a LoRA stage's adapter, with keep_adapter: OUTPUT_DIR/final_adapter
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json")
SHARD_BYTES = 4 << 30  # 4 GiB shards, as HF writes them
FULL_LOAD_BYTES = 2 << 30  # verify by a real from_pretrained up to this size; by header + tensors above


def is_full_omni(model_dir: str | Path) -> bool:
    """Whether a folder holds the full Omni model of its family (talker and token2wav/code2wav), from its config."""
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    return family_of_dir(model_dir).full_class_name in (config.get("architectures") or [])


def _weight_files(model_dir: Path) -> list[Path]:
    """The safetensors files of a folder (sharded or not)."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir} has no .safetensors weights (export reads safetensors only)")
    return files


def read_tensors(model_dir: Path, keep=lambda key: True) -> dict[str, torch.Tensor]:
    """The tensors of a folder whose names `keep` accepts."""
    tensors = {}
    for path in _weight_files(model_dir):
        with safe_open(path, "pt") as handle:
            for key in handle.keys():
                if keep(key):
                    tensors[key] = handle.get_tensor(key)
    return tensors


def thinker_tensors(thinker_dir: Path) -> dict[str, torch.Tensor]:
    """A saved thinker's weights under the full model's names (`thinker.` + the thinker's own names)."""
    return {(key if key.startswith("thinker.") else f"thinker.{key}"): value
            for key, value in read_tensors(thinker_dir).items()}


def save_sharded(tensors: dict[str, torch.Tensor], folder: Path) -> None:
    """Write tensors as HF does: one `model.safetensors`, or shards plus `model.safetensors.index.json`."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key in sorted(tensors):
        tensor = tensors[key].contiguous()
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], str(folder / "model.safetensors"), metadata={"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        weight_map.update({key: name for key in shard})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2), encoding="utf-8")


def _copy_side_files(source: Path, destination: Path) -> None:
    """Config, generation config, tokenizer/processor files and spk_dict.pt: everything but weights and folders."""
    for path in source.iterdir():
        if path.is_file() and not path.name.endswith(WEIGHT_SUFFIXES) and not path.name.startswith("."):
            shutil.copy2(path, destination / path.name)


def verify_full(folder: Path, thinker_dir: Path, expected: dict[str, torch.Tensor],
                base_dir: Path | None = None) -> None:
    """Check the export loads as the family's full class and its thinker equals the trained one.

    Small models are loaded for real (no missing or unexpected weights; thinker parameters equal those of the
    trained thinker loaded the same way). Large ones are not materialized twice: the config must load, the
    files must hold exactly the expected tensor names, and the saved thinker tensors must equal the trained.
    """
    from transformers import AutoConfig

    family = family_of_dir(folder)
    size = sum(p.stat().st_size for p in _weight_files(folder))
    if size <= FULL_LOAD_BYTES:
        model = family.full_class.from_pretrained(folder, dtype="auto")
        if base_dir is not None:  # talker etc. carried over unchanged (nothing left randomly initialized)
            base = family.full_class.from_pretrained(base_dir, dtype="auto").state_dict()
            for key, value in model.state_dict().items():
                if not key.startswith("thinker.") and not torch.equal(value, base[key].to(value.dtype)):
                    raise RuntimeError(f"export check: {key} differs from the base model's")
        trained = family.thinker_class.from_pretrained(thinker_dir, dtype="auto").state_dict()
        loaded = model.thinker.state_dict()
        if set(loaded) != set(trained):
            differ = sorted(set(loaded) ^ set(trained))[:5]
            raise RuntimeError(f"export check: thinker parameter names differ: {differ}")
        for key, value in trained.items():
            if not torch.equal(loaded[key].to(value.dtype), value):
                raise RuntimeError(f"export check: {key} differs from the trained thinker")
        if getattr(model, "talker", None) is None:
            raise RuntimeError(f"export check: {folder} loaded without a talker")
        return
    AutoConfig.from_pretrained(folder)
    written = read_tensors(folder, keep=lambda key: key.startswith("thinker."))
    if set(written) != set(expected):
        raise RuntimeError(f"export check: thinker tensor names differ: {sorted(set(written) ^ set(expected))[:5]}")
    for key, value in expected.items():
        if not torch.equal(written[key], value):
            raise RuntimeError(f"export check: {key} differs from the trained thinker")


def merge_adapter(base_dir: str | Path, adapter_dir: str | Path, destination: str | Path, dtype=None) -> Path:
    """A LoRA stage's thinker with its adapters merged into the input model's weights, saved as a plain thinker.

    The adapter is applied to a fresh load of the stage's input thinker (on this process alone), so this works
    whatever the launch was (plain, DDP, ZeRO-2, ZeRO-3): the Trainer has already gathered and saved the
    adapter, and no partitioned parameter is touched.
    """
    from peft import PeftModel

    from hs_rl.omni.loading import load_thinker

    base = load_thinker(base_dir, dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(str(destination))
    logger.info("merged the LoRA adapter %s into %s", adapter_dir, base_dir)
    return Path(destination)


def keep_adapter(adapter_dir: Path, destination: Path) -> Path:
    """Keep a LoRA stage's adapter beside final/ (loadable with PeftModel.from_pretrained on the input thinker)."""
    tmp = destination.with_name(f".{destination.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(adapter_dir, tmp)
    _replace_dir(tmp, destination)
    return destination


def _replace_dir(tmp: Path, destination: Path) -> None:
    """Swap `tmp` into `destination` with renames only, so a kill leaves the old or the new folder, never half."""
    old = destination.with_name(f".{destination.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if destination.exists():
        destination.rename(old)
    tmp.rename(destination)
    fsync_dir(destination.parent)
    if old.exists():
        shutil.rmtree(old)


def export_model(thinker_dir: str | Path, base_dir: str | Path, destination: str | Path) -> Path:
    """Build `destination` from a trained thinker folder and the stage's input model; returns it, verified."""
    thinker_dir, base_dir, destination = Path(thinker_dir), Path(base_dir), Path(destination)
    tmp = destination.with_name(f".{destination.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    if is_full_omni(base_dir):
        trained = thinker_tensors(thinker_dir)
        others = read_tensors(base_dir, keep=lambda key: not key.startswith("thinker."))
        _copy_side_files(base_dir, tmp)  # full config, spk_dict.pt (2.5), processor as the base had them
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "processor_config.json",
                     "preprocessor_config.json", "special_tokens_map.json", "generation_config.json"):
            if name != "generation_config.json" and (thinker_dir / name).is_file():
                shutil.copy2(thinker_dir / name, tmp / name)  # the processor the stage trained with
        save_sharded({**others, **trained}, tmp)
        missing = [name for name in family_of_dir(base_dir).side_files
                   if (base_dir / name).is_file() and not (tmp / name).is_file()]
        if missing:
            raise RuntimeError(f"export: {missing} not copied from {base_dir}")
        verify_full(tmp, thinker_dir, trained, base_dir)
        kind = "full"
    else:
        for path in thinker_dir.iterdir():
            if path.is_file():
                shutil.copy2(path, tmp / path.name)
        from hs_rl.omni.loading import load_thinker

        load_thinker(tmp)  # loadable, or the stage is not done
        kind = "thinker"
    atomic_write(tmp / EXPORT_MARKER, json.dumps({"kind": kind, "base": str(base_dir)}) + "\n")
    _replace_dir(tmp, destination)
    logger.info("exported %s model to %s", kind, destination)
    return destination


def is_exported(folder: str | Path) -> bool:
    """A final folder that export_model finished and verified."""
    return (Path(folder) / EXPORT_MARKER).is_file()
