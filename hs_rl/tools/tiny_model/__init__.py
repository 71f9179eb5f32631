"""Offline builders of small random Omni checkpoints (Qwen2.5-Omni or Qwen3-Omni) for demos, tests and benchmarks.

Nothing is downloaded: the tokenizer is trained here with `tokenizers`, the processor is the family's real one
(`Qwen2_5OmniProcessor` / `Qwen3OmniMoeProcessor`), and the weights are random. Two checkpoints are written: a
complete model laid out like the released one (`Qwen2_5OmniForConditionalGeneration` with talker, token2wav and
`spk_dict.pt`; or `Qwen3OmniMoeForConditionalGeneration` with an MoE thinker of a few experts, talker and
code2wav) at the top of the output folder, and `thinker/` inside it (a thinker-only checkpoint), so the
output folder itself is what `--model_name_or_path` takes. Presets: `tiny` (< 100k parameters, seconds on CPU),
`demo` (what `hs-rl demo` trains: learns the curriculum in minutes on CPU) and `small` (tens of millions of
parameters with the 7B model's encoder/LM proportions, for benchmarks). What differs per family (token texts,
processor, configs) is a `TinyFamily` in this package's `qwen2_5_omni.py` and `qwen3_omni.py`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

import torch

from hs_rl.choices import check_choices
from hs_rl.omni.families import FamilyName, get_family
from hs_rl.rewards.common import TAGS
from hs_rl.tools.tiny_model.base import TinyFamily
from hs_rl.tools.tiny_model.qwen2_5_omni import TinyQwen25Omni
from hs_rl.tools.tiny_model.qwen3_omni import TinyQwen3Omni

TINY_FAMILIES: dict[str, TinyFamily] = {tiny.name: tiny for tiny in (TinyQwen25Omni(), TinyQwen3Omni())}
SPECIAL_TOKENS = TinyQwen25Omni.special_tokens  # Qwen2.5-Omni's token texts (each family has its own)
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
    # the curriculum in a minute or two per stage on CPU. Text attention heads of 32 (2 heads, 1 kv head: the same
    # q/kv widths as 4 heads of 16 with 2 kv heads): vLLM's CPU attention refuses head sizes under 32
    "demo": dict(hidden=64, layers=2, heads=2, kv_heads=1, intermediate=128, v_hidden=32, v_depth=1, v_heads=2,
                 v_intermediate=64, a_hidden=32, a_layers=1, a_heads=2, a_ffn=64, vocab=640, init=0.1),
    # ~30M parameters; the 7B model's ratios (vision ~ 675M : audio ~ 640M : LM ~ 7B) scaled down
    "small": dict(hidden=512, layers=6, heads=8, kv_heads=2, intermediate=1536, v_hidden=256, v_depth=4, v_heads=4,
                  v_intermediate=512, a_hidden=256, a_layers=4, a_heads=4, a_ffn=1024, vocab=2048,
                  # Qwen3-Omni only: a sparse LM (the 30B-A3B model routes to 8 of 128 experts)
                  experts=8, experts_per_tok=2, moe_intermediate=384),
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
    family: FamilyName = field(
        default="qwen2_5_omni", metadata={"help": "qwen2_5_omni or qwen3_omni (MoE thinker, DeepStack, "
                                                  "talker + code2wav)."})
    seed: int = field(default=0, metadata={"help": "Seed of the random weights."})

    def __post_init__(self):
        check_choices(self)


def tiny_family(name: str) -> TinyFamily:
    """The tiny-model builder of the family called `name` (an unknown name: the runtime's own error)."""
    get_family(name)
    return TINY_FAMILIES[name]


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


def build_tokenizer(vocab_size: int, family: str = "qwen2_5_omni"):
    """Train a byte-level BPE tokenizer locally and wrap it as a Qwen2 tokenizer with the family's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    fam = tiny_family(family)
    media_tokens = dict(fam.special_tokens)
    specials = CHAT_TOKENS + list(media_tokens.values()) + list(fam.extra_tokens)
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
        extra_special_tokens=media_tokens,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": CHAT_TOKENS[1:] + list(media_tokens.values())
                                  + list(fam.extra_tokens)})
    if fam.corpus_words:  # one token each, as in the released vocabulary
        tokenizer.add_tokens(list(fam.corpus_words))
    tokenizer.chat_template = chat_template(family)
    return tokenizer


def chat_template(family: str = "qwen2_5_omni") -> str:
    """Our ChatML-style template with the family's media token texts (package resources: ships in the wheel)."""
    resource = tiny_family(family).chat_template_resource
    return resources.files("hs_rl").joinpath(resource).read_text(encoding="utf-8")


def make_tiny_model(output_dir: str | Path, preset: str = "tiny", seed: int = 0,
                    family: str = "qwen2_5_omni") -> dict[str, Path]:
    """Write the full checkpoint in `output_dir` and a thinker-only one in `output_dir/thinker` (idempotent)."""
    tiny = tiny_family(family)
    fam = tiny.family
    output_dir = Path(output_dir)
    paths = {"root": output_dir, "full": output_dir, "thinker": output_dir / "thinker"}
    if (output_dir / MARKER).exists():
        return paths
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(PRESETS[preset]["vocab"], family)
    processor = tiny.build_processor(tokenizer)
    t_config = tiny.tiny_thinker_config(tokenizer, PRESETS[preset])
    full = fam.full_class(tiny.tiny_full_config(t_config, tokenizer))
    tiny.finish_tiny(full)
    full.save_pretrained(paths["full"])
    processor.save_pretrained(paths["full"])
    tiny.tiny_side_files(paths["full"])
    thinker = fam.thinker_class(t_config)
    thinker.load_state_dict(full.thinker.state_dict())
    thinker.save_pretrained(paths["thinker"])
    processor.save_pretrained(paths["thinker"])
    (output_dir / MARKER).write_text(json.dumps({"preset": preset, "seed": seed, "family": family}))
    return paths


def run_make_tiny_model(args: TinyModelArguments) -> int:
    """CLI entry: write the model and say where."""
    paths = make_tiny_model(args.output_dir, preset=args.preset, seed=args.seed, family=args.family)
    print(f"full Omni checkpoint: {paths['full']}\nthinker-only checkpoint: {paths['thinker']}")
    return 0
