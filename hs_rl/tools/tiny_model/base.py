"""What the tiny-model builder needs per family beside the runtime's `Family`: the released tokenizer's token
texts, the processor, small configs of the thinker and the full model, and a short speech check.

Test, demo and benchmark fixtures only; the runtime (hs_rl.omni.families) never needs them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hs_rl.omni.families import Family, get_family


class TinyFamily:
    """The builder of one family's tiny random checkpoint. Subclasses fill in the attributes and the hooks."""

    name: str = ""  # the family's name (hs_rl.omni.families)
    special_tokens: dict[str, str] = {}  # tokenizer attribute -> token text, as in the released tokenizer
    extra_tokens: tuple[str, ...] = ()  # other special tokens the released tokenizer has and the model uses
    corpus_words: tuple[str, ...] = ()  # plain words the tiny tokenizer must hold as single tokens
    chat_template_resource: str = ""  # our chat template with these token texts, a resource of package hs_rl

    @property
    def family(self) -> Family:
        return get_family(self.name)

    def build_processor(self, tokenizer):
        raise NotImplementedError

    def tiny_thinker_config(self, tokenizer, preset: dict[str, Any]):
        raise NotImplementedError

    def tiny_full_config(self, thinker_config, tokenizer):
        raise NotImplementedError

    def finish_tiny(self, full_model) -> None:
        """Fix up a freshly built random full model before it is saved (nothing by default)."""

    def tiny_side_files(self, folder: Path) -> None:
        """Write non-weight files the released full checkpoint has (nothing by default)."""

    def speak(self, model, processor, text: str) -> torch.Tensor:
        """Generate speech for a short text prompt with a loaded full model; returns the waveform."""
        raise NotImplementedError
