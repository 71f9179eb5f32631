"""Qwen3-Omni's tiny random checkpoint: the released tokenizer's token texts, the real processor, an MoE thinker
of a few experts with DeepStack, and a minimal MoE talker (with code predictor) + code2wav."""
from __future__ import annotations

from typing import Any

import torch

from hs_rl.tools.tiny_model.base import TinyFamily


class TinyQwen3Omni(TinyFamily):
    name = "qwen3_omni"
    # token texts of the released Qwen3-Omni tokenizer
    special_tokens = {
        "image_token": "<|image_pad|>",
        "audio_token": "<|audio_pad|>",
        "video_token": "<|video_pad|>",
        "vision_bos_token": "<|vision_start|>",
        "vision_eos_token": "<|vision_end|>",
        "audio_bos_token": "<|audio_start|>",
        "audio_eos_token": "<|audio_end|>",
    }
    extra_tokens = ("<tts_pad>", "<tts_text_bos>", "<tts_text_eod>")
    corpus_words = ("system", "user", "assistant")  # the talker finds turns by these role tokens
    chat_template_resource = "resources/chat_template_qwen3_omni.jinja"
    speaker = "Ethan"

    def build_processor(self, tokenizer):
        """The real Qwen3-Omni processor around our tokenizer (Whisper features, Qwen2-VL video patches of 16 px)."""
        from transformers import (
            Qwen2VLImageProcessor,
            Qwen2VLVideoProcessor,
            Qwen3OmniMoeProcessor,
            WhisperFeatureExtractor,
        )

        return Qwen3OmniMoeProcessor(
            image_processor=Qwen2VLImageProcessor(patch_size=16), video_processor=Qwen2VLVideoProcessor(patch_size=16),
            feature_extractor=WhisperFeatureExtractor(feature_size=128), tokenizer=tokenizer,
            chat_template=tokenizer.chat_template,
        )

    def tiny_thinker_config(self, tokenizer, p: dict[str, Any]):
        """A Qwen3-Omni thinker config of the preset's size (a few experts, DeepStack on the first LM layers)."""
        from transformers.models.qwen3_omni_moe.configuration_qwen3_omni_moe import (
            Qwen3OmniMoeAudioEncoderConfig,
            Qwen3OmniMoeTextConfig,
            Qwen3OmniMoeThinkerConfig,
            Qwen3OmniMoeVisionEncoderConfig,
        )

        init = p.get("init", 0.02)
        ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in self.special_tokens.items()}
        layers = max(p["layers"], 2)
        head_dim = p["hidden"] // p["heads"]
        half = head_dim // 2
        hw = half * 5 // 16  # the 30B model's 24/20/20 split of 64
        text = Qwen3OmniMoeTextConfig(
            vocab_size=len(tokenizer), hidden_size=p["hidden"], intermediate_size=p["intermediate"],
            num_hidden_layers=layers, num_attention_heads=p["heads"], num_key_value_heads=p["kv_heads"],
            head_dim=head_dim, moe_intermediate_size=p.get("moe_intermediate", p["intermediate"] // 2),
            num_experts=p.get("experts", 4), num_experts_per_tok=p.get("experts_per_tok", 2),
            max_position_embeddings=32768, tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [half - 2 * hw, hw, hw]},
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, initializer_range=init,
        )
        v_depth = max(p["v_depth"], 2)
        vision = Qwen3OmniMoeVisionEncoderConfig(
            depth=v_depth, hidden_size=p["v_hidden"], intermediate_size=p["v_intermediate"], num_heads=p["v_heads"],
            out_hidden_size=p["hidden"], patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
            num_position_embeddings=64, deepstack_visual_indexes=list(range(min(v_depth, layers, 3))),
            initializer_range=init,
        )
        audio = Qwen3OmniMoeAudioEncoderConfig(
            num_mel_bins=128, encoder_layers=p["a_layers"], encoder_attention_heads=p["a_heads"],
            encoder_ffn_dim=p["a_ffn"], d_model=p["a_hidden"], output_dim=p["hidden"], downsample_hidden_size=8,
            n_window=50, n_window_infer=400, initializer_range=init,
        )
        config = Qwen3OmniMoeThinkerConfig(
            audio_config=audio, vision_config=vision, text_config=text,
            audio_token_id=ids["audio_token"], image_token_id=ids["image_token"], video_token_id=ids["video_token"],
            audio_start_token_id=ids["audio_bos_token"], position_id_per_seconds=13,
            user_token_id=tokenizer.convert_tokens_to_ids("user"), initializer_range=init,
        )
        # get_rope_index reads these off the thinker config; the released config carries them.
        config.vision_start_token_id = ids["vision_bos_token"]
        config.vision_end_token_id = ids["vision_eos_token"]
        config.audio_end_token_id = ids["audio_eos_token"]
        config.pad_token_id = tokenizer.pad_token_id
        config.eos_token_id = tokenizer.eos_token_id
        return config

    def tiny_full_config(self, thinker, tokenizer):
        """Our thinker plus a minimal MoE talker (with code predictor) and code2wav, as the released layout."""
        from transformers.models.qwen3_omni_moe.configuration_qwen3_omni_moe import (
            Qwen3OmniMoeCode2WavConfig,
            Qwen3OmniMoeConfig,
            Qwen3OmniMoeTalkerCodePredictorConfig,
            Qwen3OmniMoeTalkerConfig,
            Qwen3OmniMoeTalkerTextConfig,
        )

        groups, codebook = 4, 64
        # codec ids: codes below `codebook`; generate suppresses the top 1024 ids but the end-of-speech one, so the
        # specials sit there, as in the released vocabulary (2048 codes + 1024 others)
        codec_vocab = codebook + 1024
        rope = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 1, 1]}
        talker_text = Qwen3OmniMoeTalkerTextConfig(
            vocab_size=codec_vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1, head_dim=8, moe_intermediate_size=16, num_experts=2, num_experts_per_tok=1,
            rope_parameters=rope,
        )
        talker_text.shared_expert_intermediate_size = 16  # the released config carries it; the class has no default
        predictor = Qwen3OmniMoeTalkerCodePredictorConfig(
            vocab_size=codebook, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1, head_dim=8, num_code_groups=groups,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        )
        token = tokenizer.convert_tokens_to_ids
        talker = Qwen3OmniMoeTalkerConfig(
            code_predictor_config=predictor, text_config=talker_text, num_code_groups=groups,
            thinker_hidden_size=thinker.text_config.hidden_size,
            accept_hidden_layer=thinker.text_config.num_hidden_layers,
            codec_eos_token_id=codebook + 2, codec_nothink_id=codebook + 3, codec_think_bos_id=codebook + 4,
            codec_think_eos_id=codebook + 5, codec_pad_id=codebook, codec_bos_id=codebook + 1,
            audio_token_id=thinker.audio_token_id, image_token_id=thinker.image_token_id,
            video_token_id=thinker.video_token_id, vision_start_token_id=thinker.vision_start_token_id,
            audio_start_token_id=thinker.audio_start_token_id, position_id_per_seconds=13,
            speaker_id={"ethan": codebook + 6},
        )
        talker.spatial_merge_size = thinker.vision_config.spatial_merge_size  # as in the released config
        code2wav = Qwen3OmniMoeCode2WavConfig(
            codebook_size=codebook, hidden_size=16, num_attention_heads=2, num_key_value_heads=2,
            intermediate_size=32, num_hidden_layers=1, num_quantizers=groups, upsample_rates=[2, 2],
            upsampling_ratios=[2], decoder_dim=16, sliding_window=8,
        )
        return Qwen3OmniMoeConfig(
            thinker_config=thinker, talker_config=talker, code2wav_config=code2wav,
            im_start_token_id=token("<|im_start|>"), im_end_token_id=token("<|im_end|>"),
            tts_pad_token_id=token("<tts_pad>"), tts_bos_token_id=token("<tts_text_bos>"),
            tts_eos_token_id=token("<tts_text_eod>"), system_token_id=token("system"), user_token_id=token("user"),
            assistant_token_id=token("assistant"),
        )

    def finish_tiny(self, full_model) -> None:
        """transformers 5.23 leaves the talker's fused expert weights uninitialized (torch.empty: denormals or NaN,
        different on every build); give them the initializer's normal values."""
        std = full_model.config.talker_config.initializer_range
        with torch.no_grad():
            for layer in full_model.talker.model.layers:
                experts = getattr(layer.mlp, "experts", None)
                if experts is not None:
                    for parameter in experts.parameters():
                        parameter.normal_(0.0, std)

    def speak(self, model, processor, text: str) -> torch.Tensor:
        _, wav = model.generate(**processor(text=[text], return_tensors="pt"), speaker=self.speaker,
                                return_audio=True, thinker_max_new_tokens=4, talker_max_new_tokens=8,
                                talker_min_new_tokens=4,  # random weights may stop at once
                                thinker_do_sample=False, talker_do_sample=False,
                                thinker_eos_token_id=processor.tokenizer.eos_token_id)
        return wav
