"""Qwen3-Omni (Qwen3OmniMoe): MoE thinker with DeepStack vision, its own audio encoder, talker + code2wav.

What differs from Qwen2.5-Omni, and how hs-rl honours it:
- DeepStack: the vision tower also returns features of some of its layers, which the thinker adds to the hidden
  states of its first LM layers at the video positions. The pooled features go into `inputs_embeds` like
  Qwen2.5-Omni's; the DeepStack ones reach the LM through transformers' own `mm_encoder_outputs` argument (the
  thinker builds `visual_pos_masks` from `input_ids` and injects them), so every forward — generation prefill,
  old/reference log-probs, the loss — applies them exactly as the model's own forward does.
- Rope positions are fractional (float) for videos (`position_id_per_seconds`); hs-rl keeps their dtype.
- The LM is a sparse MoE: router logits give TRL's load-balancing auxiliary loss (`router_aux_loss_coef`), and
  the experts can be frozen (`freeze_experts`). LoRA adapts its attention projections by default (`lora_targets`).
- Audio tokens per clip follow the windowed encoder (`n_window`), not Whisper's halving.
- A full checkpoint carries `talker.` (with its code predictor) and `code2wav.`; speakers live in the config.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

from hs_rl.omni.families.base import Family, multimodal_model


class Qwen3Omni(Family):
    name = "qwen3_omni"
    model_types = ("qwen3_omni_moe", "qwen3_omni_moe_thinker")
    thinker_class_name = "Qwen3OmniMoeThinkerForConditionalGeneration"
    full_class_name = "Qwen3OmniMoeForConditionalGeneration"
    side_files = ()
    has_experts = True
    # LoRA's default targets: the attention projections. Every LM layer's MLP is a sparse MoE (no shared expert)
    # whose experts are fused 3-D parameters, not nn.Linear modules; peft maps the names gate_proj/up_proj/down_proj
    # onto them as `target_parameters` (one adapter per expert), which refuse lora_dropout != 0 (TRL's default is
    # 0.05). The router stays as it is too.
    lora_targets = ("q_proj", "k_proj", "v_proj", "o_proj")

    def expert_parameters(self, thinker) -> Iterable[torch.nn.Parameter]:
        for layer in self.language_model(thinker).layers:
            experts = getattr(layer.mlp, "experts", None)
            if experts is not None:
                yield from experts.parameters()

    def encode_video(self, thinker, pixels, grids):
        out = multimodal_model(thinker).get_video_features(pixels, grids, return_dict=True)
        per_video = list(zip(*out.deepstack_features))  # videos × layers
        return list(out.pooler_output), [list(layers) for layers in per_video]

    def audio_output_lengths(self, thinker, frame_lengths: torch.Tensor) -> list[int]:
        from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import _get_feat_extract_output_lengths

        return _get_feat_extract_output_lengths(frame_lengths, thinker.config.audio_config.n_window).tolist()

    def forward_extras(self, thinker, input_ids, encoded):
        """DeepStack: the rows' pooled and multi-layer video features as transformers' `mm_encoder_outputs`, with
        `input_ids` so the thinker finds the video positions (it scatters the same pooled features again)."""
        with_video = [e for e in encoded if "video" in e]
        if not with_video:
            return {}
        layers = len(with_video[0]["deepstack"])
        if multimodal_model(thinker) is thinker:  # transformers 5.20: the bare language model takes them directly
            return {"visual_pos_masks": input_ids == thinker.config.video_token_id,
                    "deepstack_visual_embeds": [torch.cat([e["deepstack"][i] for e in with_video])
                                                for i in range(layers)]}
        from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import BaseModelOutputWithDeepstackFeatures

        video = BaseModelOutputWithDeepstackFeatures(
            pooler_output=tuple(e["video"] for e in with_video),
            deepstack_features=[tuple(e["deepstack"][i] for e in with_video) for i in range(layers)],
        )
        return {"input_ids": input_ids, "mm_encoder_outputs": {"video": video}}

    def non_thinker_prefixes(self) -> tuple[str, ...]:
        return ("talker.", "code2wav.")
