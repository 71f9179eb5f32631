"""Load an Omni thinker (Qwen2.5-Omni or Qwen3-Omni) and its processor from a local folder, and freeze what is
not trained.

The family is read from the folder's config.json (`model_type`, see hs_rl.omni.families), never from its path.
Both layouts of a checkpoint work: a full folder (weights under `thinker.`, plus talker and token2wav/code2wav)
and a thinker-only folder. Nothing is fetched from a hub.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import AutoProcessor

from hs_rl.omni.families import family_of, family_of_dir, family_of_model_type, model_types, read_model_type


def check_model_dir(path: str | Path) -> Path:
    """A local checkpoint folder with a config, or a clear error before anything is loaded."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"model path {str(path)!r} is not a local folder (hs-rl never downloads weights)")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"model folder {folder} has no config.json")
    return folder


def check_model_modalities(path: str | Path, modalities: set[str]) -> None:
    """Refuse, before loading weights, a checkpoint that cannot take the dataset's modalities."""
    model_type = read_model_type(check_model_dir(path))
    if family_of_model_type(model_type) is not None:
        return
    needs = ", ".join(sorted(modalities)) or "video/audio"
    raise ValueError(f"model {path} is a {model_type!r} checkpoint; hs-rl trains Qwen2.5-Omni and Qwen3-Omni "
                     f"(model_type {' or '.join(model_types())}), which the dataset's modalities ({needs}) need")


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device | None = None) -> torch.dtype | str:
    """A dtype option ('bfloat16', 'float32', 'auto', None or a torch dtype) → what from_pretrained takes.

    Without a device (training): 'auto' is the checkpoint's own dtype and None float32. With the device the model
    will run on (eval): 'auto' and None are bf16 on a GPU and float32 on a CPU (bf16 on CPU is slow and not what
    anyone benchmarks).
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "", "auto"):
        if device is not None:
            return torch.bfloat16 if device.type == "cuda" else torch.float32
        return "auto" if dtype == "auto" else torch.float32
    return getattr(torch, dtype)


def load_thinker(path: str | Path, dtype: str | torch.dtype | None = None,
                 attn_implementation: str | None = None):
    """The thinker of the folder's family, from a full Omni folder or a thinker-only one (SDPA unless told)."""
    folder = check_model_dir(path)
    return family_of_dir(folder).thinker_class.from_pretrained(
        folder, dtype=resolve_dtype(dtype), attn_implementation=attn_implementation or "sdpa")


def load_processor(path: str | Path):
    """The checkpoint's own processor (tokenizer, chat template, video and audio processors)."""
    return AutoProcessor.from_pretrained(check_model_dir(path))


def freeze_encoders(thinker, vision: bool = True, audio: bool = True) -> None:
    """Stop gradients into the vision and/or audio towers (the recipe trains the language model only)."""
    towers = family_of(thinker).towers(thinker)
    for name, frozen in (("vision", vision), ("audio", audio)):
        for parameter in towers[name].parameters():
            parameter.requires_grad_(not frozen)


def freeze_experts(thinker, frozen: bool = True) -> int:
    """Stop (or allow) gradients into the LM's MoE expert weights; returns how many tensors it touched (0 for a
    dense LM). Attention, routers and shared parts stay trainable."""
    count = 0
    for parameter in family_of(thinker).expert_parameters(thinker):
        parameter.requires_grad_(not frozen)
        count += 1
    return count


def lora_target_modules(thinker, names: Iterable[str] | None, language_model_only: bool) -> list[str]:
    """LoRA's `target_modules`: the leaf module names `names` (None: the family's defaults, `Family.lora_targets`),
    as the full names of the language model's modules when `language_model_only` (the towers' own q_proj, k_proj,
    … stay untouched), else as given (matched everywhere).

    Full names, not a regex: for an MoE thinker (Qwen3-Omni) peft 0.21 resolves a regex into the bare leaf names
    it matches (its transformers-5 weight conversion), which then match the towers' projections as well. A name
    no LM module has (an MoE's expert parameters) is left to peft as given.
    """
    family = family_of(thinker)
    wanted = list(family.lora_targets if names is None else names)
    if not language_model_only:
        return wanted
    language_model = family.language_model(thinker)
    prefix = next(name for name, module in thinker.named_modules() if module is language_model)
    found = [f"{prefix}.{name}" for name, _ in language_model.named_modules() if name.rpartition(".")[2] in wanted]
    matched = {name.rpartition(".")[2] for name in found}
    return found + [name for name in wanted if name not in matched]
