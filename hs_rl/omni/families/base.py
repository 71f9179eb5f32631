"""What differs between the Omni model families hs-rl trains, behind one small interface: `Family`.

Everything the trainer, generation, loading and export need to know about a family lives in one module per family
(`qwen2_5_omni.py`, `qwen3_omni.py`), as a `Family` subclass:

- its thinker and full-model classes and `model_type`s (so the family is read from `config.json`, never the path);
- which encoder towers exist, which parameters are MoE experts, and LoRA's default target projections;
- how the towers turn media into LM inputs: pooled features for the placeholders, their lengths, and any extra
  keyword arguments the LM forward takes (Qwen3-Omni's DeepStack visual features);
- the export layout (the non-thinker parts a full folder carries: talker + token2wav, or talker + code2wav).

A tiny random checkpoint of each family (configs, processor, token texts) for tests, demos and benchmarks is a
fixture, not the runtime's: hs_rl.tools.tiny_model builds it.

Rope positions need no family code: both thinkers expose `get_rope_index` with the same arguments (on
`multimodal_model(thinker)`).

Two module layouts of the same thinker classes exist across the transformers releases hs-rl admits, and
`multimodal_model` / `Family.language_model` are the only places that tell them apart (by attribute, not version):
transformers 5.23 nests the towers, the language model, `get_*_features`, `get_rope_index` and `rope_deltas` in a
`thinker.model` (`Qwen2_5OmniThinkerModel`: `thinker.model.visual`, `thinker.model.language_model`); 5.20 keeps them
on the thinker itself, whose `thinker.model` is the language model (`thinker.visual`, `thinker.model`).
"""
from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from typing import Any

import torch


def multimodal_model(thinker) -> torch.nn.Module:
    """The module that holds the thinker's towers, `get_video_features` / `get_audio_features`, `get_rope_index`
    and `rope_deltas`: `thinker.model` where the thinker nests them (transformers 5.23), the thinker itself where
    its `model` is the bare language model (5.20)."""
    inner = thinker.model
    return inner if hasattr(inner, "audio_tower") else thinker


@contextlib.contextmanager
def language_backbone(thinker) -> Iterator[None]:
    """For the duration, let TRL's fused LM head (`add_fused_lm_head`: each call runs `model.base_model`, then the
    head itself) reach a backbone without the head. 5.23's thinker has one (`base_model` is `thinker.model`, towers
    and LM); 5.20's declares `base_model_prefix = "thinker"`, an attribute it lacks, so its `base_model` is the
    thinker itself, head included, and the fused forward fails. There this instance's prefix points at its bare
    language model (`thinker.model`) inside the block only: outside it `base_model` stays the thinker, which 5.20's
    `generate` needs (it runs `base_model.get_video_features` on raw video; the bare language model has none, and
    the forward then refuses the unencoded pixels). A no-op on 5.23, and when already inside such a block."""
    if multimodal_model(thinker) is not thinker or thinker.base_model is not thinker:
        yield
        return
    thinker.base_model_prefix = "model"  # an instance attribute over the class's; the class is untouched
    try:
        yield
    finally:
        del thinker.base_model_prefix


class Family:
    """One Omni model family. Subclasses fill in the class attributes and override the hooks that differ."""

    name: str = ""
    model_types: tuple[str, ...] = ()  # full model type first, then the thinker-only one
    thinker_class_name: str = ""
    full_class_name: str = ""
    side_files: tuple[str, ...] = ()  # non-weight files a full checkpoint needs beside config.json (spk_dict.pt)
    has_experts: bool = False
    # LoRA's default targets (`use_peft` without `lora_target_modules`), leaf names of the LM's nn.Linear
    # projections: for a dense LM every attention and MLP projection
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

    # ---- classes -------------------------------------------------------------------------------------------
    @property
    def thinker_class(self):
        """The thinker's transformers class, declared to skip the full folder's other models when it loads from one:
        transformers 5.23 declares that itself; 5.20 does not, and printed a 70-line table of "UNEXPECTED" talker and
        speech-decoder weights for every thinker loaded from a full Omni folder (every stage, every process)."""
        import transformers

        cls = getattr(transformers, self.thinker_class_name)
        ignored = list(cls._keys_to_ignore_on_load_unexpected or [])
        missing = [f"^{re.escape(prefix)}" for prefix in self.non_thinker_prefixes()
                   if f"^{re.escape(prefix)}" not in ignored]
        if missing:
            cls._keys_to_ignore_on_load_unexpected = ignored + missing
        return cls

    @property
    def full_class(self):
        import transformers

        return getattr(transformers, self.full_class_name)

    # ---- towers and parameters -----------------------------------------------------------------------------
    def towers(self, thinker) -> dict[str, torch.nn.Module]:
        """The encoder towers by modality ("vision", "audio")."""
        home = multimodal_model(thinker)
        return {"vision": home.visual, "audio": home.audio_tower}

    def expert_parameters(self, thinker) -> Iterable[torch.nn.Parameter]:
        """The language model's MoE expert weights (none for a dense LM)."""
        return iter(())

    def language_model(self, thinker) -> torch.nn.Module:
        """The thinker's language model (its decoder layers), without the towers."""
        home = multimodal_model(thinker)
        return home.language_model if home is not thinker else thinker.model

    # ---- media → LM inputs ---------------------------------------------------------------------------------
    def encode_video(self, thinker, pixels: torch.Tensor, grids: torch.Tensor
                     ) -> tuple[list[torch.Tensor], list[list[torch.Tensor]] | None]:
        """Per video: its pooled features (tokens, H) and, where the family has them, its DeepStack features
        (one (tokens, H) tensor per injected LM layer)."""
        out = multimodal_model(thinker).get_video_features(pixels, grids, return_dict=True)
        return list(out.pooler_output), None

    def audio_output_lengths(self, thinker, frame_lengths: torch.Tensor) -> list[int]:
        """How many LM tokens each audio of `frame_lengths` mel frames becomes."""
        raise NotImplementedError

    def encode_audio(self, thinker, features: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """Per audio: its features (tokens, H), from a padded (n, mels, frames) batch and its frame mask."""
        hidden = multimodal_model(thinker).get_audio_features(features, mask, return_dict=True).last_hidden_state
        return list(torch.split(hidden, self.audio_output_lengths(thinker, mask.sum(-1))))

    def forward_extras(self, thinker, input_ids: torch.Tensor, encoded: list[dict[str, Any]]) -> dict[str, Any]:
        """Keyword arguments the LM forward needs beside `inputs_embeds` (none for a family without DeepStack).
        `input_ids` are the forward's columns, placeholders outside the prompts already blanked."""
        return {}

    # ---- export --------------------------------------------------------------------------------------------
    def non_thinker_prefixes(self) -> tuple[str, ...]:
        """Weight-name prefixes of the parts a full folder carries over from its input model."""
        raise NotImplementedError
