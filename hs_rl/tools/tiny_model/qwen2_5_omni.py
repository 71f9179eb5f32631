"""Qwen2.5-Omni's tiny random checkpoint: the released tokenizer's token texts, the real processor, a thinker
of the preset's size and a minimal talker + token2wav (with a one-speaker `spk_dict.pt`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hs_rl.tools.tiny_model.base import TinyFamily


class TinyQwen25Omni(TinyFamily):
    name = "qwen2_5_omni"
    special_tokens = {
        "image_token": "<|IMAGE|>",
        "audio_token": "<|AUDIO|>",
        "video_token": "<|VIDEO|>",
        "vision_bos_token": "<|vision_bos|>",
        "vision_eos_token": "<|vision_eos|>",
        "audio_bos_token": "<|audio_bos|>",
        "audio_eos_token": "<|audio_eos|>",
    }
    chat_template_resource = "resources/chat_template.jinja"

    def build_processor(self, tokenizer):
        """The real Qwen2.5-Omni processor around our tokenizer (Whisper features, Qwen2-VL video patches)."""
        from transformers import (
            Qwen2_5OmniProcessor,
            Qwen2VLImageProcessor,
            Qwen2VLVideoProcessor,
            WhisperFeatureExtractor,
        )

        return Qwen2_5OmniProcessor(
            image_processor=Qwen2VLImageProcessor(), video_processor=Qwen2VLVideoProcessor(),
            feature_extractor=WhisperFeatureExtractor(feature_size=128), tokenizer=tokenizer,
            chat_template=tokenizer.chat_template,
        )

    def tiny_thinker_config(self, tokenizer, p: dict[str, Any]):
        """A Qwen2.5-Omni thinker config of the preset's size whose special ids match `tokenizer`."""
        from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import (
            Qwen2_5OmniAudioEncoderConfig,
            Qwen2_5OmniTextConfig,
            Qwen2_5OmniThinkerConfig,
            Qwen2_5OmniVisionEncoderConfig,
        )

        init = p.get("init", 0.02)
        ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in self.special_tokens.items()}
        head_dim = p["hidden"] // p["heads"]
        half = head_dim // 2
        mrope = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]  # temporal, height, width (7B: 16/24/24)
        text = Qwen2_5OmniTextConfig(
            vocab_size=max(len(tokenizer), p.get("model_vocab", 0)), hidden_size=p["hidden"],
            intermediate_size=p["intermediate"],
            num_hidden_layers=p["layers"], num_attention_heads=p["heads"], num_key_value_heads=p["kv_heads"],
            max_position_embeddings=32768, tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope},
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, initializer_range=init,
        )
        vision = Qwen2_5OmniVisionEncoderConfig(
            depth=p["v_depth"], hidden_size=p["v_hidden"], intermediate_size=p["v_intermediate"],
            num_heads=p["v_heads"], out_hidden_size=p["hidden"], fullatt_block_indexes=[p["v_depth"] - 1],
            window_size=112, initializer_range=init,
        )
        audio = Qwen2_5OmniAudioEncoderConfig(
            num_mel_bins=128, encoder_layers=p["a_layers"], encoder_attention_heads=p["a_heads"],
            encoder_ffn_dim=p["a_ffn"], d_model=p["a_hidden"], output_dim=p["hidden"], initializer_range=init,
        )
        config = Qwen2_5OmniThinkerConfig(
            audio_config=audio, vision_config=vision, text_config=text,
            audio_token_index=ids["audio_token"], image_token_index=ids["image_token"],
            video_token_index=ids["video_token"], audio_start_token_id=ids["audio_bos_token"],
            audio_end_token_id=ids["audio_eos_token"], user_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
            initializer_range=init,
        )
        # get_rope_index reads these off the thinker config; the released config carries them.
        config.vision_start_token_id = ids["vision_bos_token"]
        config.vision_end_token_id = ids["vision_eos_token"]
        config.pad_token_id = tokenizer.pad_token_id
        config.eos_token_id = tokenizer.eos_token_id
        return config

    def tiny_full_config(self, thinker, tokenizer):
        """A complete Omni config: our thinker plus a minimal talker and token2wav (sub-config objects)."""
        from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import (
            Qwen2_5OmniBigVGANConfig,
            Qwen2_5OmniConfig,
            Qwen2_5OmniDiTConfig,
            Qwen2_5OmniTalkerConfig,
            Qwen2_5OmniToken2WavConfig,
        )

        text = thinker.text_config
        talker = Qwen2_5OmniTalkerConfig(
            # the codec vocabulary; sized like the text one so the thinker's special ids it carries are in range
            vocab_size=text.vocab_size, embedding_size=text.hidden_size, hidden_size=16, intermediate_size=32,
            num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 1, 1]},
            audio_token_index=thinker.audio_token_index, image_token_index=thinker.image_token_index,
            video_token_index=thinker.video_token_index, vision_start_token_id=thinker.vision_start_token_id,
            vision_end_token_id=thinker.vision_end_token_id, audio_start_token_id=thinker.audio_start_token_id,
            audio_end_token_id=thinker.audio_end_token_id, tts_codec_start_token_id=60, tts_codec_end_token_id=61,
            tts_codec_pad_token_id=62, tts_codec_mask_token_id=63, tts_text_start_token_id=1,
            tts_text_end_token_id=2, tts_text_pad_token_id=0,
        )
        dit = Qwen2_5OmniDiTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, head_dim=8, emb_dim=8,
                                   num_embeds=text.vocab_size, mel_dim=8, enc_emb_dim=8, enc_dim=8,
                                   enc_channels=[8, 8, 8, 8, 24],
                                   enc_attention_channels=8, enc_se_channels=8, look_ahead_layers=[1],
                                   look_backward_layers=[0, 1], ff_mult=1)
        bigvgan = Qwen2_5OmniBigVGANConfig(mel_dim=8, upsample_initial_channel=16, resblock_kernel_sizes=[3],
                                           resblock_dilation_sizes=[[1, 3, 5]], upsample_rates=[2, 2],
                                           upsample_kernel_sizes=[4, 4])
        token2wav = Qwen2_5OmniToken2WavConfig(dit_config=dit, bigvgan_config=bigvgan)
        return Qwen2_5OmniConfig(thinker_config=thinker, talker_config=talker, token2wav_config=token2wav)

    def tiny_side_files(self, folder: Path) -> None:
        # One speaker, shaped like the released file, so `from_pretrained` and speech generation find it.
        speaker = {"Chelsie": {"cond": torch.zeros(8), "ref_mel": torch.zeros(10, 8), "bos_token": 60}}
        torch.save(speaker, folder / "spk_dict.pt")

    def speak(self, model, processor, text: str) -> torch.Tensor:
        _, wav = model.generate(**processor(text=[text], return_tensors="pt"), generation_mode="audio",
                                speaker="Chelsie", thinker_max_new_tokens=4, talker_max_new_tokens=8,
                                talker_eos_token_id=[61])
        return wav
