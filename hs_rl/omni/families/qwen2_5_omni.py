"""Qwen2.5-Omni: dense thinker (vision tower, Whisper-style audio tower, Qwen2 LM), talker + token2wav.

Media become LM inputs only at their placeholders (no DeepStack); a full checkpoint carries `talker.`,
`token2wav.` and `spk_dict.pt` beside the thinker.
"""
from __future__ import annotations

import torch

from hs_rl.omni.families.base import Family


class Qwen25Omni(Family):
    name = "qwen2_5_omni"
    model_types = ("qwen2_5_omni", "qwen2_5_omni_thinker")
    thinker_class_name = "Qwen2_5OmniThinkerForConditionalGeneration"
    full_class_name = "Qwen2_5OmniForConditionalGeneration"
    side_files = ("spk_dict.pt",)

    def audio_output_lengths(self, thinker, frame_lengths: torch.Tensor) -> list[int]:
        return self.towers(thinker)["audio"]._get_feat_extract_output_lengths(frame_lengths)[1].tolist()

    def non_thinker_prefixes(self) -> tuple[str, ...]:
        return ("talker.", "token2wav.")
