"""Offline builders of small random Qwen2.5-Omni checkpoints for demos, tests and benchmarks.

Nothing is downloaded: the tokenizer is trained here with `tokenizers`, the processor is the real
`Qwen2_5OmniProcessor`, and the weights are random. Two checkpoints are written: a complete
`Qwen2_5OmniForConditionalGeneration` with talker, token2wav and `spk_dict.pt`, as the released checkpoint
is laid out) at the top of the output folder, and `thinker/` inside it (a thinker-only checkpoint), so the
output folder itself is what `--model_name_or_path` takes. Presets: `tiny` (< 100k parameters, seconds on CPU),
`demo` (what `hs-rl demo` trains: learns the curriculum in minutes on CPU) and `small` (tens of millions of
parameters with the 7B model's encoder/LM proportions, for benchmarks).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

import torch

from hs_rl.choices import check_choices
from hs_rl.rewards.common import TAGS

SPECIAL_TOKENS = {
    # name on the tokenizer -> token text, as in the released Qwen2.5-Omni tokenizer
    "image_token": "<|IMAGE|>",
    "audio_token": "<|AUDIO|>",
    "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>",
    "vision_eos_token": "<|vision_eos|>",
    "audio_bos_token": "<|audio_bos|>",
    "audio_eos_token": "<|audio_eos|>",
}
CHAT_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MARKER = "hs_rl_tiny_model.json"  # written last: the folder is complete (and says what built it)

# name -> (text hidden, text layers, heads, kv heads, intermediate, vision hidden, vision depth, audio d_model,
#          audio layers, vocab size)
PRESETS = {
    # under 100k parameters: the whole GRPO pipeline runs in seconds on one CPU core
    "tiny": dict(hidden=32, layers=1, heads=2, kv_heads=1, intermediate=48, v_hidden=16, v_depth=1, v_heads=2,
                 v_intermediate=24, a_hidden=16, a_layers=1, a_heads=2, a_ffn=24, vocab=640,
                 # at the usual 0.02 a model this small outputs a near-uniform distribution whatever its input, so
                 # every prompt samples the same text; 0.3 makes its output depend on the prompt and its media
                 init=0.3),
    # what `hs-rl demo` trains: a little more room than `tiny`, init 0.1 (its format warm-up, not the init, makes the
    # first samples differ; at 0.02 a supervised check learned the curriculum half as fast), so that GRPO learns
    # the curriculum in a minute or two per stage on CPU
    "demo": dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, v_hidden=32, v_depth=1, v_heads=2,
                 v_intermediate=64, a_hidden=32, a_layers=1, a_heads=2, a_ffn=64, vocab=640, init=0.1),
    # ~30M parameters; the 7B model's ratios (vision ~ 675M : audio ~ 640M : LM ~ 7B) scaled down
    "small": dict(hidden=512, layers=6, heads=8, kv_heads=2, intermediate=1536, v_hidden=256, v_depth=4, v_heads=4,
                  v_intermediate=512, a_hidden=256, a_layers=4, a_heads=4, a_ffn=1024, vocab=2048),
    # benchmark proxy of the recipe (benchmarks/grpo_step.py --recipe): the released model's vocabulary size
    # (152,064 rows in the embedding and the LM head; the tokenizer itself stays small), its MLP/hidden ratio
    # (18944/3584 ≈ 5.3), GQA (kv heads = heads/4 here, /7 there), the 7B's encoder/LM parameter ratio (vision
    # 0.68B + audio 0.64B : LM 7.6B ≈ 0.17, embeddings included on both sides), and a transformer body as costly
    # per token as a 2-core CPU allows: 20 layers of width 256 weigh about 0.6 of the LM head (about 12 in the 7B),
    # which makes the head, the part packing cannot shrink, a far larger share of the step than on the real model
    "recipe": dict(hidden=256, layers=20, heads=4, kv_heads=1, intermediate=1344, v_hidden=256, v_depth=9, v_heads=4,
                   v_intermediate=768, a_hidden=256, a_layers=11, a_heads=4, a_ffn=1024, vocab=2048,
                   model_vocab=152064),
}


@dataclass
class TinyModelArguments:
    """Arguments of `hs-rl make-tiny-model`."""

    output_dir: str = field(metadata={"help": "Folder for the full Omni checkpoint (and `thinker/` inside it)."})
    preset: Literal["tiny", "demo", "small", "recipe"] = field(default="tiny", metadata={
        "help": "tiny (<100k params), demo (what hs-rl demo trains), small (tens of millions) or recipe (the "
                "benchmark's proxy: real vocabulary, 7B encoder/LM proportion)."})
    seed: int = field(default=0, metadata={"help": "Seed of the random weights."})

    def __post_init__(self):
        check_choices(self)


def _corpus() -> list[str]:
    """Text the tokenizer is trained on: the words our prompts and answers use, so sequences stay short."""
    words = [
        *TAGS, "yes", "no", "Yes", "No", "A", "B", "C", "D", "E",
        "happy", "sad", "angry", "person", "people", "video", "audio", "question", "answer", "option", "options",
    ]
    lines = [" ".join(words), "0 1 2 3 4 5 6 7 8 9 10", "A. B. C. D. E. AC BD ABC"]
    try:  # our prompt wording, so the tiny tokenizer encodes prompts in few tokens
        from hs_rl.data import prompts

        lines += [v for n, v in vars(prompts).items() if n.isupper() and isinstance(v, str)]
    except ImportError:
        pass
    return lines * 20


def build_tokenizer(vocab_size: int):
    """Train a byte-level BPE tokenizer locally and wrap it as a Qwen2 tokenizer with Omni special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    specials = CHAT_TOKENS + list(SPECIAL_TOKENS.values())
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(specials), special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=CHAT_TOKENS[1:],
        extra_special_tokens=dict(SPECIAL_TOKENS),
    )
    tokenizer.add_special_tokens({"additional_special_tokens": CHAT_TOKENS[1:] + list(SPECIAL_TOKENS.values())})
    tokenizer.chat_template = chat_template()
    return tokenizer


def chat_template() -> str:
    """Our ChatML-style template (in package resources, so it ships in the wheel)."""
    return resources.files("hs_rl").joinpath("resources/chat_template.jinja").read_text(encoding="utf-8")


def build_processor(tokenizer):
    """The real Qwen2.5-Omni processor around our tokenizer (Whisper features, Qwen2-VL video patches)."""
    from transformers import Qwen2_5OmniProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor, WhisperFeatureExtractor

    return Qwen2_5OmniProcessor(
        image_processor=Qwen2VLImageProcessor(),
        video_processor=Qwen2VLVideoProcessor(),
        feature_extractor=WhisperFeatureExtractor(feature_size=128),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )


def thinker_config(tokenizer, preset: str):
    """A Qwen2.5-Omni thinker config of the preset's size whose special ids match `tokenizer`."""
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import (
        Qwen2_5OmniAudioEncoderConfig,
        Qwen2_5OmniTextConfig,
        Qwen2_5OmniThinkerConfig,
        Qwen2_5OmniVisionEncoderConfig,
    )

    p = PRESETS[preset]
    init = p.get("init", 0.02)
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in SPECIAL_TOKENS.items()}
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
        depth=p["v_depth"], hidden_size=p["v_hidden"], intermediate_size=p["v_intermediate"], num_heads=p["v_heads"],
        out_hidden_size=p["hidden"], fullatt_block_indexes=[p["v_depth"] - 1], window_size=112,
        initializer_range=init,
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


def full_config(thinker):
    """A complete Omni config: our thinker plus a minimal talker and token2wav (sub-config objects, not dicts)."""
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


def make_tiny_model(output_dir: str | Path, preset: str = "tiny", seed: int = 0) -> dict[str, Path]:
    """Write the full checkpoint in `output_dir` and a thinker-only one in `output_dir/thinker` (idempotent)."""
    from transformers import Qwen2_5OmniForConditionalGeneration, Qwen2_5OmniThinkerForConditionalGeneration

    output_dir = Path(output_dir)
    paths = {"root": output_dir, "full": output_dir, "thinker": output_dir / "thinker"}
    if (output_dir / MARKER).exists():
        return paths
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(PRESETS[preset]["vocab"])
    processor = build_processor(tokenizer)
    t_config = thinker_config(tokenizer, preset)
    full = Qwen2_5OmniForConditionalGeneration(full_config(t_config))
    full.save_pretrained(paths["full"])
    processor.save_pretrained(paths["full"])
    # One speaker, shaped like the released file, so `from_pretrained` and speech generation find it.
    speaker = {"Chelsie": {"cond": torch.zeros(8), "ref_mel": torch.zeros(10, 8), "bos_token": 60}}
    torch.save(speaker, paths["full"] / "spk_dict.pt")
    thinker = Qwen2_5OmniThinkerForConditionalGeneration(t_config)
    thinker.load_state_dict(full.thinker.state_dict())
    thinker.save_pretrained(paths["thinker"])
    processor.save_pretrained(paths["thinker"])
    (output_dir / MARKER).write_text(json.dumps({"preset": preset, "seed": seed}))
    return paths


def run_make_tiny_model(args: TinyModelArguments) -> int:
    """CLI entry: write the model and say where."""
    paths = make_tiny_model(args.output_dir, preset=args.preset, seed=args.seed)
    print(f"full Omni checkpoint: {paths['full']}\nthinker-only checkpoint: {paths['thinker']}")
    return 0
