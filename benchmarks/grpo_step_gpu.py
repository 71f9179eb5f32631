"""One GRPO step of a 7B-shaped Qwen2.5-Omni thinker on one GPU: packed groups (ours) against TRL-minimal.

    python benchmarks/grpo_step_gpu.py --out result.json   # CUDA: bf16, as many of the 28 LM layers as fit
    python benchmarks/grpo_step_gpu.py --cpu-smoke         # CPU, tiny dims: the same code path in a minute

Recorded in benchmarks/RESULTS.md ("GPU"); raw logs and JSON of those runs in benchmarks/gpu_runs/.

Model: the released Qwen2.5-Omni-7B thinker's shape (`THINKER_7B`, written out from its config.json), random
weights, bf16, sdpa attention, gradient checkpointing on for the loss forwards, both towers frozen (the recipe's
default), the language model trained with AdamW. The LM keeps as many of its 28 decoder layers as fit next to
the weights, gradients, optimizer states and the TRL-minimal mode's activations (it needs the most), and the
script says how many; every other dimension is the 7B's. The towers are the real 7B ones.

Prompt: one video+audio prompt of about 4k tokens built by the real Qwen2.5-Omni processor (our chat template,
`load_audio_from_video`, audio interleaved in the video as in the recipe's video_audio stage) from random frames
and random audio; G = 8 completions of exactly `--completion` tokens each (EOS and media ids suppressed).

Modes, all on the same weights in one process, their steps interleaved (order rotated each round):
- `trl` — TRL with a minimal omni override: one batched `generate` over the G duplicated rows, media duplicated
  G times; reference and policy log-probs from plain thinker forwards over the G rows with the duplicated media
  (towers run in each forward), TRL's fused LM head (`add_fused_lm_head`).
- `ours` — hs_rl's code: `generate_rows` (towers once per prompt, one prefill per group, the KV cache indexed out
  to the G rows) and `shared_prefix_logps` (the group packed as one sequence: prompt once, G completions with a
  block mask through transformers' mask interface) for reference and policy.
- `ours_noshare` — towers once per prompt, then the plain per-row forward (the trainer with shared_prefix off).
- `ours_flex` (opt-in, `--modes`) — `ours` with the LM's attention set to flex_attention for the loss forwards and
  their backward (it skips the blocks the packed mask rules out; sdpa computes them). It compiles per shape.

With gradient checkpointing on, transformers' `enable_input_require_grads` also hooks the towers' input layers,
so in `trl` the frozen towers' activations require grad and its backward runs back through both towers on all G
copies of the media; our modes run frozen towers under no_grad, once per prompt (`encode_media`).

The reference forward runs on the policy's weights under no_grad (at the first step they are the reference's;
a real run holds a second copy, 2 bytes per parameter, left out of the memory here in every mode alike).
Rewards are a fixed random advantage per row (text rewards cost milliseconds). The loss is TRL's `grpo` with
beta 0.1. AdamW keeps its states in bf16 here (a multi-GPU run keeps fp32 master weights and states, sharded).

Measured per step (CUDA-synchronized): rollout (towers + prefill + decoding), reference forward, policy forward,
backward, optimizer; rollout tokens/s = G × completion / rollout time; peak memory = torch.cuda.max_memory_allocated
over the step. MFU of the policy forward+backward = model FLOPs / (forward + backward time) / peak, the FLOPs
counted by `policy_flops` (recomputation under gradient checkpointing is not model FLOPs and is not counted):

    linear     6 · L · N_layer · T            N_layer = matmul parameters of one decoder layer, T = tokens the LM sees
    attention 12 · L · (heads · head_dim) · pairs   pairs = query-key pairs the mask allows (causal and block)
    LM head    6 · hidden · vocab · G·C       only completion positions are scored (TRL's compact fused head)
    towers     2 · N_tower · tokens in        trl only: the frozen towers run inside its forward (no backward)

with T = G·(P + C) and pairs = G·S(S+1)/2 (S = P + C) for the plain modes, T = (P - 1) + G·C and
pairs = (P-1)P/2 + G·(C·(P-1) + C(C+1)/2) for the packed group. Peak: 989 TFLOP/s, the H100 SXM's dense bf16
figure; the script also measures an 8192³ bf16 matmul and reports MFU against that.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")  # less fragmentation

import torch  # noqa: E402

from hs_rl.omni.families import family_of, language_backbone, multimodal_model  # noqa: E402

# Qwen2.5-Omni-7B, config.json "thinker_config" as released (transformers' Qwen2_5Omni* config classes default to
# the same text and audio values; the vision tower there defaults to hidden 3584, the released tower is 1280 wide).
THINKER_7B = {
    "text": dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                 num_attention_heads=28, num_key_value_heads=4, hidden_act="silu", rms_norm_eps=1e-6,
                 max_position_embeddings=32768, rope_theta=1000000.0, mrope_section=[16, 24, 24],
                 tie_word_embeddings=False),
    "vision": dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, in_channels=3, patch_size=14,
                   spatial_merge_size=2, temporal_patch_size=2, window_size=112, out_hidden_size=3584,
                   fullatt_block_indexes=[7, 15, 23, 31], hidden_act="silu"),
    "audio": dict(num_mel_bins=128, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120,
                  d_model=1280, max_source_positions=1500, n_window=100, output_dim=3584),
}
# --cpu-smoke: the same structure, tiny
THINKER_SMOKE = {
    "text": dict(THINKER_7B["text"], hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=1, mrope_section=[2, 3, 3]),
    "vision": dict(THINKER_7B["vision"], depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                   out_hidden_size=64, fullatt_block_indexes=[1]),
    "audio": dict(THINKER_7B["audio"], encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64, d_model=32,
                  output_dim=64),
}
H100_BF16_DENSE = 989.4e12  # NVIDIA H100 SXM5 datasheet, dense bf16 tensor-core FLOP/s
MODES = ("trl", "ours", "ours_noshare")
PACKED = ("ours", "ours_flex")  # ours_flex: ours with flex_attention for the loss forwards (opt-in)
GiB = 1024 ** 3


# ------------------------------------------------------------------------------------------- model and prompt

def build_processor():
    from hs_rl.tools.tiny_model import build_tokenizer, tiny_family

    return tiny_family("qwen2_5_omni").build_processor(build_tokenizer(2048))


def thinker_config(dims: dict, tokenizer, layers: int):
    """A thinker config with `dims` and `layers` LM layers; special ids from `tokenizer` (placeholders match)."""
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import (
        Qwen2_5OmniAudioEncoderConfig,
        Qwen2_5OmniTextConfig,
        Qwen2_5OmniThinkerConfig,
        Qwen2_5OmniVisionEncoderConfig,
    )

    from hs_rl.tools.tiny_model import SPECIAL_TOKENS

    t = dict(dims["text"])
    rope = {"rope_type": "default", "rope_theta": t.pop("rope_theta"), "mrope_section": t.pop("mrope_section")}
    t["num_hidden_layers"] = layers
    text = Qwen2_5OmniTextConfig(**t, rope_parameters=rope, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in SPECIAL_TOKENS.items()}
    config = Qwen2_5OmniThinkerConfig(
        audio_config=Qwen2_5OmniAudioEncoderConfig(**dims["audio"]),
        vision_config=Qwen2_5OmniVisionEncoderConfig(**dims["vision"]), text_config=text,
        audio_token_index=ids["audio_token"], image_token_index=ids["image_token"],
        video_token_index=ids["video_token"], audio_start_token_id=ids["audio_bos_token"],
        audio_end_token_id=ids["audio_eos_token"], user_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"))
    config.vision_start_token_id = ids["vision_bos_token"]
    config.vision_end_token_id = ids["vision_eos_token"]
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    return config


def build_thinker(config, device: torch.device, dtype: torch.dtype):
    """Random weights made on `device` directly (a 7B init on the CPU would take minutes)."""
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration
    from trl.trainer.utils import add_fused_lm_head

    from hs_rl.omni.loading import freeze_encoders

    with torch.device(device):
        thinker = Qwen2_5OmniThinkerForConditionalGeneration._from_config(config, dtype=dtype,
                                                                          attn_implementation="sdpa")
    freeze_encoders(thinker, vision=True, audio=True)
    add_fused_lm_head(thinker, temperature=1.0)  # what TRL's GRPOTrainer does to the policy
    return thinker


def decoder_layers(thinker) -> torch.nn.ModuleList:
    """The LM's decoder layer list (the only ModuleList named `layers` that is as long as the text config says)."""
    n = thinker.config.get_text_config().num_hidden_layers
    for name, module in thinker.named_modules():
        if name.endswith("layers") and isinstance(module, torch.nn.ModuleList) and len(module) == n \
                and "audio" not in name and "visual" not in name:
            return module
    raise RuntimeError("decoder layers not found")


def trim_layers(thinker, layers: int) -> None:
    """Keep the first `layers` LM layers (after an out-of-memory error)."""
    module = decoder_layers(thinker)
    del module[layers:]
    text = thinker.config.get_text_config()
    text.num_hidden_layers = layers
    if getattr(text, "layer_types", None):
        text.layer_types = text.layer_types[:layers]


def build_prompt(processor, frames: int, side: int, fps: float, device, dtype):
    """One video+audio PromptMedia from random frames and audio through the real processor (recipe layout)."""
    import numpy as np

    from hs_rl.data.prompt_media import PromptMedia

    gen = torch.Generator().manual_seed(0)
    messages = [{"role": "user", "content": [
        {"type": "video"},
        {"type": "text", "text": "What is the person in the video feeling? Think first, then answer with one "
                                 "option. A. happy B. sad C. angry D. neutral"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    video = torch.randint(0, 256, (frames, 3, side, side), dtype=torch.uint8, generator=gen)
    seconds = frames / fps
    audio = (np.random.default_rng(0).standard_normal(int(16000 * seconds)) * 0.1).astype(np.float32)
    output = processor(text=[text], videos=[video], audio=[audio], return_tensors="pt",
                       videos_kwargs={"fps": fps, "do_resize": False, "do_sample_frames": False},
                       audio_kwargs={"truncation": False, "max_length": max(len(audio), 16000 * 30)},
                       load_audio_from_video=True, audio_from_video_indices=[0])
    row = PromptMedia.from_processor_output(output, use_audio_in_video=True).to(device)
    row.pixel_values_videos = row.pixel_values_videos.to(dtype)
    row.input_features = row.input_features.to(dtype)
    return row


# ------------------------------------------------------------------------------------------- FLOPs

def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def layer_matmul_params(text) -> int:
    h, ffn = text.hidden_size, text.intermediate_size
    head_dim = getattr(text, "head_dim", None) or h // text.num_attention_heads
    q, kv = text.num_attention_heads * head_dim, text.num_key_value_heads * head_dim
    return h * q + 2 * h * kv + q * h + 3 * h * ffn


def attention_pairs(mode: str, P: int, C: int, G: int) -> int:
    if mode in PACKED:
        return (P - 1) * P // 2 + G * (C * (P - 1) + C * (C + 1) // 2)
    S = P + C
    return G * S * (S + 1) // 2


def lm_tokens(mode: str, P: int, C: int, G: int) -> int:
    return (P - 1) + G * C if mode in PACKED else G * (P + C)


def policy_flops(mode: str, thinker, P: int, C: int, G: int, tower_tokens: dict) -> dict:
    """Model FLOPs of one policy forward+backward (formulas in the module docstring)."""
    text = thinker.config.get_text_config()
    L = text.num_hidden_layers
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    out = {
        "linear": 6 * L * layer_matmul_params(text) * lm_tokens(mode, P, C, G),
        "attention": 12 * L * text.num_attention_heads * head_dim * attention_pairs(mode, P, C, G),
        "lm_head": 6 * text.hidden_size * text.vocab_size * G * C,
        "towers": 0,
    }
    if mode == "trl":
        towers = family_of(thinker).towers(thinker)
        out["towers"] = 2 * G * (count(towers["vision"]) * tower_tokens["video_patches"]
                                 + count(towers["audio"]) * tower_tokens["audio_frames"])
    out["total"] = sum(out.values())
    return out


# ------------------------------------------------------------------------------------------- one step

def sync(device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def media_kwargs(row, repeat: int) -> dict:
    return {"pixel_values_videos": row.pixel_values_videos.repeat(repeat, 1),
            "video_grid_thw": row.video_grid_thw.repeat(repeat, 1),
            "video_second_per_grid": row.video_second_per_grid.repeat(repeat),
            "input_features": row.input_features.repeat(repeat, 1, 1),
            "feature_attention_mask": row.feature_attention_mask.repeat(repeat, 1),
            "use_audio_in_video": row.use_audio_in_video}


def set_checkpointing(thinker, on: bool) -> None:
    if on:
        thinker.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        thinker.gradient_checkpointing_disable()


def rollout(mode: str, thinker, row, G: int, gen, eos: int) -> torch.Tensor:
    """(G, C) completion ids."""
    from hs_rl.omni.generation import generate_rows

    P = row.input_ids.numel()
    if mode == "trl":
        ids = row.input_ids[None].repeat(G, 1)
        multimodal_model(thinker).rope_deltas = None
        try:
            out = thinker.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=gen,
                                   **media_kwargs(row, G))
        finally:
            multimodal_model(thinker).rope_deltas = None
        return out[:, P:]
    completions = generate_rows(thinker, [row] * G, gen, [eos], encoders_frozen=True)
    return torch.tensor(completions, device=row.input_ids.device)


def logps(mode: str, thinker, row, ids: torch.Tensor, G: int, C: int) -> torch.Tensor:
    """(G, C) per-token log-probs of the completion columns, the mode's way."""
    from hs_rl.grpo.prefix_sharing import shared_prefix_logps
    from hs_rl.omni.inputs import embed_rows, rope_positions

    P = ids.shape[1] - C
    mask = torch.ones_like(ids)
    rows = [row] * G
    if mode in PACKED:
        return shared_prefix_logps(thinker, thinker, ids, mask, rows, C, encoders_frozen=True,
                                   run_all_towers=False, compute_entropy=False)[0]
    labels = ids.clone()
    labels[:, :P] = -100
    multimodal_model(thinker).rope_deltas = None
    if mode == "trl":
        out = thinker(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True, **media_kwargs(row, G))
    else:  # ours_noshare: the trainer's plain path (cached tower outputs, our 3-D positions)
        embeds = embed_rows(thinker, ids, rows, use_cache=True, prompt_width=P)
        positions = rope_positions(thinker, mask, rows, P)
        with language_backbone(thinker):  # TRL's fused head: a head-less backbone
            out = thinker(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, labels=labels,
                          fused_lm_head=True)
    multimodal_model(thinker).rope_deltas = None
    return out.log_probs[:, -C:]


@contextlib.contextmanager
def lm_attention(thinker, mode: str):
    """ours_flex: the LM's attention is flex_attention for the loss forwards AND their backward (gradient
    checkpointing recomputes the layers there); read at each call by the attention layers and the mask builder."""
    text = thinker.config.get_text_config()
    before = text._attn_implementation
    if mode == "ours_flex":
        text._attn_implementation = "flex_attention"
    try:
        yield
    finally:
        text._attn_implementation = before


def grpo_step(mode: str, thinker, optimizer, row, G: int, C: int, gen, eos: int, advantages: torch.Tensor,
              beta: float = 0.1) -> dict:
    device = row.input_ids.device
    row.cache.clear()  # a new prompt every step: towers and rope run again (ours once, trl in every pass)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = sync(device)
    set_checkpointing(thinker, False)  # as TRL: off while generating
    with torch.no_grad():
        completions = rollout(mode, thinker, row, G, gen, eos)
    t1 = sync(device)
    if completions.shape != (G, C):
        raise RuntimeError(f"{mode}: completions of shape {tuple(completions.shape)}, expected {(G, C)}")
    set_checkpointing(thinker, True)
    ids = torch.cat([row.input_ids[None].repeat(G, 1), completions], 1)
    with lm_attention(thinker, mode):
        with torch.no_grad():
            ref = logps(mode, thinker, row, ids, G, C)
        t2 = sync(device)
        lp = logps(mode, thinker, row, ids, G, C)
        t3 = sync(device)
        kl = torch.exp(ref - lp) - (ref - lp) - 1
        per_token = -(torch.exp(lp - lp.detach()) * advantages[:, None]) + beta * kl
        loss = per_token.float().mean(-1).sum() / G
        loss.backward()
        t4 = sync(device)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    t5 = sync(device)
    peak = torch.cuda.max_memory_allocated() / GiB if device.type == "cuda" else float("nan")
    return {"step": t5 - t0, "rollout": t1 - t0, "ref": t2 - t1, "fwd": t3 - t2, "bwd": t4 - t3, "opt": t5 - t4,
            "peak_gib": peak, "loss": loss.item(), "tokens": G * C}


@torch.no_grad()
def agreement(modes, thinker, row, G: int, C: int, low: int) -> dict:
    """Max |log-prob difference| of each mode against the first on the same random completions (ids >= low)."""
    row.cache.clear()
    vocab = thinker.config.get_text_config().vocab_size
    completions = torch.randint(low, vocab, (G, C), generator=torch.Generator().manual_seed(2))
    ids = torch.cat([row.input_ids[None].repeat(G, 1), completions.to(row.input_ids.device)], 1)
    set_checkpointing(thinker, False)
    out = {}
    for mode in modes:
        with lm_attention(thinker, mode):
            out[mode] = logps(mode, thinker, row, ids, G, C).float()
    base = out[modes[0]]
    return {"mean_logp": base.mean().item(),
            **{f"max_abs_diff_{mode}_vs_{modes[0]}": (out[mode] - base).abs().max().item() for mode in modes[1:]}}


# ------------------------------------------------------------------------------------------- driver

def matmul_tflops(device) -> float:
    """Measured bf16 matmul rate (8192³, mean of 10 after 3 warm-ups), random data."""
    n = 8192
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    start = sync(device)
    for _ in range(10):
        a @ b
    elapsed = sync(device) - start
    del a, b
    return 2 * n ** 3 * 10 / elapsed / 1e12


def layers_that_fit(thinker_dims: dict, free_bytes: int, P: int, C: int, G: int, tower_params: int) -> int:
    """LM layers that fit: weights+grads+AdamW (bf16, 8 B/param), trl's checkpointed activations, headroom."""
    t = thinker_dims["text"]
    h, V = t["hidden_size"], t["vocab_size"]
    kv = t["num_key_value_heads"] * h // t["num_attention_heads"]
    per_layer_params = h * (2 * h + 2 * kv) + 3 * h * t["intermediate_size"]
    tokens = G * (P + C)
    per_layer = 8 * per_layer_params + 2 * tokens * h * 1.1  # + the checkpointed layer input of the trl mode
    transient = tokens * (2 * 6 * t["intermediate_size"] + 2 * 14 * h)  # one layer recomputed + its backward
    fixed = 8 * 2 * V * h + 2 * tower_params + transient + 6 * GiB
    return max(1, min(t["num_hidden_layers"], int((free_bytes - fixed) // per_layer)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny dims on CPU (checks the code path)")
    parser.add_argument("--layers", type=int, default=None, help="LM layers (default: as many as fit)")
    parser.add_argument("--G", type=int, default=8)
    parser.add_argument("--completion", type=int, default=512)
    parser.add_argument("--warmup-completion", type=int, default=16)
    parser.add_argument("--frames", type=int, default=26, help="video frames (1 fps; audio as long)")
    parser.add_argument("--side", type=int, default=448, help="frame side in pixels (multiple of 28)")
    parser.add_argument("--rounds", type=int, default=2, help="measured rounds (each mode once per round)")
    parser.add_argument("--budget", type=float, default=200.0, help="seconds: start no round after this")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--out", default=None, help="JSON result file")
    parser.add_argument("--no-matmul", action="store_true", help="skip measuring the bf16 matmul rate")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    modes = tuple(args.modes.split(","))
    smoke = args.cpu_smoke
    if smoke:
        args.frames, args.side, args.completion, args.warmup_completion = 4, 112, 8, 4
        args.rounds = min(args.rounds, 1)
    device = torch.device("cpu" if smoke else "cuda")
    dtype = torch.float32 if smoke else torch.bfloat16
    dims = THINKER_SMOKE if smoke else THINKER_7B
    torch.manual_seed(0)
    if smoke:  # TRL scores only the labelled positions on GPU; do the same on the CPU
        import trl.trainer.utils as trl_utils

        trl_utils._use_triton = lambda device: True
    import transformers
    import trl

    info = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
            "transformers": transformers.__version__, "trl": trl.__version__, "G": args.G,
            "completion": args.completion}
    print(json.dumps(info), flush=True)
    if device.type == "cuda" and not args.no_matmul:
        info["matmul_tflops"] = matmul_tflops(device)
        print(f"bf16 matmul 8192^3: {info['matmul_tflops']:.0f} TFLOP/s", flush=True)

    processor = build_processor()
    tokenizer = processor.tokenizer
    row = build_prompt(processor, args.frames, args.side, 1.0, device, dtype)
    P, G, C = row.input_ids.numel(), args.G, args.completion
    config = thinker_config(dims, tokenizer, 1)
    n_video = int((row.input_ids == config.video_token_index).sum())
    n_audio = int((row.input_ids == config.audio_token_index).sum())
    tower_tokens = {"video_patches": int(row.pixel_values_videos.shape[0]),
                    "audio_frames": int(row.feature_attention_mask.sum()) // 2}  # after the stride-2 conv
    info.update(prompt_tokens=P, video_tokens=n_video, audio_tokens=n_audio, frames=args.frames, side=args.side)
    print(f"prompt: {P} tokens ({n_video} video, {n_audio} audio, {P - n_video - n_audio} text); G={G}, "
          f"completions of {C} tokens", flush=True)

    layers = args.layers
    if layers is None:
        if device.type == "cuda":
            probe = build_thinker(thinker_config(dims, tokenizer, 1), device, dtype)
            towers = sum(count(tower) for tower in family_of(probe).towers(probe).values())
            del probe
            gc.collect()
            torch.cuda.empty_cache()
            free, total = torch.cuda.mem_get_info()
            layers = layers_that_fit(dims, free, P, C, G, towers)
            print(f"memory: {free / GiB:.1f} of {total / GiB:.1f} GiB free -> {layers} LM layers", flush=True)
        else:
            layers = dims["text"]["num_hidden_layers"]
    config = thinker_config(dims, tokenizer, layers)
    thinker = build_thinker(config, device, dtype)
    thinker.train()
    text = config.get_text_config()
    trainable = [p for p in thinker.parameters() if p.requires_grad]
    info.update(layers=layers, params=count(thinker), lm_params=sum(p.numel() for p in trainable),
                vision_params=count(family_of(thinker).towers(thinker)["vision"]),
                audio_params=count(family_of(thinker).towers(thinker)["audio"]))
    print(f"thinker: {layers}/28 LM layers, {info['params'] / 1e9:.2f}B params ({info['lm_params'] / 1e9:.2f}B "
          f"trained LM, towers {info['vision_params'] / 1e9:.2f}B + {info['audio_params'] / 1e9:.2f}B frozen)",
          flush=True)

    from transformers import GenerationConfig

    suppressed = sorted({config.audio_token_index, config.image_token_index, config.video_token_index,
                         config.vision_start_token_id, config.vision_end_token_id, config.audio_start_token_id,
                         config.audio_end_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id,
                         tokenizer.convert_tokens_to_ids("<|im_start|>")})

    def generation(length: int):
        return GenerationConfig(max_new_tokens=length, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                suppress_tokens=suppressed, use_cache=True)

    advantages = torch.randn(G, generator=torch.Generator().manual_seed(1)).to(device)
    advantages = (advantages - advantages.mean()) / advantages.std()
    fused = device.type == "cuda"
    optimizer = torch.optim.AdamW(trainable, lr=1e-6, fused=fused)
    results = {m: [] for m in modes}
    trims = 0
    failed: set[str] = set()
    rnd = -1
    while rnd < args.rounds:
        if rnd >= 0 and time.perf_counter() - began > args.budget:
            print(f"budget of {args.budget:.0f}s reached: stopping after {rnd} measured round(s)", flush=True)
            break
        length = args.warmup_completion if rnd < 0 else C
        order = modes[rnd % len(modes):] + modes[:rnd % len(modes)] if rnd >= 0 else modes
        try:
            for mode in order:
                if mode in failed:
                    continue
                try:
                    got = grpo_step(mode, thinker, optimizer, row, G, length, generation(length),
                                    tokenizer.eos_token_id, advantages)
                except Exception as err:  # noqa: BLE001 - the opt-in flex mode may fail to compile; the rest go on
                    if mode != "ours_flex" or isinstance(err, torch.OutOfMemoryError):
                        raise
                    import traceback

                    traceback.print_exc()
                    print(f"{mode} failed: {type(err).__name__}: {str(err)[:300]}; going on without it", flush=True)
                    failed.add(mode)
                    optimizer.zero_grad(set_to_none=True)
                    continue
                tag = "warm-up" if rnd < 0 else f"round {rnd}"
                print(f"[{tag}] {mode:12s} step {got['step']:6.2f}s rollout {got['rollout']:6.2f} "
                      f"ref {got['ref']:5.2f} fwd {got['fwd']:5.2f} bwd {got['bwd']:5.2f} opt {got['opt']:4.2f} "
                      f"peak {got['peak_gib']:5.1f} "
                      f"GiB loss {got['loss']:+.4f}", flush=True)
                if rnd >= 0:
                    results[mode].append(got)
        except torch.OutOfMemoryError as err:
            if device.type != "cuda" or trims >= 3 or layers <= 2:
                raise
            print(f"out of memory with {layers} layers ({str(err).splitlines()[0][:120]}); retrying with "
                  f"{layers - 2}", flush=True)
            optimizer.zero_grad(set_to_none=True)
            del optimizer
            thinker.zero_grad(set_to_none=True)
            layers -= 2
            trim_layers(thinker, layers)
            gc.collect()
            torch.cuda.empty_cache()
            trainable = [p for p in thinker.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(trainable, lr=1e-6, fused=fused)
            info.update(layers=layers, params=count(thinker), lm_params=sum(p.numel() for p in trainable))
            results = {m: [] for m in modes}
            trims += 1
            rnd = -1
            continue
        if rnd < 0:
            try:
                info["agreement"] = agreement([m for m in modes if m not in failed], thinker, row, G, C,
                                              len(tokenizer))
            except Exception as err:  # noqa: BLE001 - as above, for the opt-in flex mode only
                if "ours_flex" not in modes or isinstance(err, torch.OutOfMemoryError):
                    raise
                print(f"agreement with ours_flex failed: {type(err).__name__}: {str(err)[:300]}", flush=True)
                failed.add("ours_flex")
                info["agreement"] = agreement([m for m in modes if m not in failed], thinker, row, G, C,
                                              len(tokenizer))
            print(f"log-probs of the modes on the same {G}x{C} completions: {info['agreement']}", flush=True)
        rnd += 1

    peak_flops = H100_BF16_DENSE
    summary = {}
    for mode in modes:
        steps = results[mode]
        if not steps:
            continue
        mean = {k: statistics.fmean(s[k] for s in steps) for k in ("step", "rollout", "ref", "fwd", "bwd", "opt")}
        flops = policy_flops(mode, thinker, P, C, G, tower_tokens)
        fb = mean["fwd"] + mean["bwd"]
        summary[mode] = {
            **mean, "step_sd": statistics.stdev([s["step"] for s in steps]) if len(steps) > 1 else 0.0,
            "n": len(steps), "peak_gib": max(s["peak_gib"] for s in steps),
            "rollout_tok_s": G * C / mean["rollout"], "flops": flops, "lm_tokens": lm_tokens(mode, P, C, G),
            "mfu": flops["total"] / fb / peak_flops,
            "mfu_vs_measured_matmul": (flops["total"] / fb / (info["matmul_tflops"] * 1e12)
                                       if "matmul_tflops" in info else None),
        }
    info.update(layers=layers, trims=trims, failed=sorted(failed), summary=summary, steps=results,
                wall_s=time.perf_counter() - began, peak_flops=peak_flops,
                text_layer_matmul_params=layer_matmul_params(text))
    rounds = min((s["n"] for s in summary.values()), default=0)
    print(f"\n{info['device']}: Qwen2.5-Omni-7B-shaped thinker with {layers}/28 LM layers, bf16, sdpa, gradient "
          f"checkpointing; prompt {P} tokens, G={G} x {C}-token completions; mean of {rounds} "
          f"measured round(s); MFU = policy fwd+bwd model FLOPs / time / {peak_flops / 1e12:.0f} TFLOP/s")
    print(f"{'mode':12s} {'step s':>12s} {'rollout s':>9s} {'tok/s':>7s} {'ref s':>6s} {'fwd s':>6s} {'bwd s':>6s} "
          f"{'LM tokens':>9s} {'TFLOP':>7s} {'MFU':>6s} {'peak GiB':>8s}")
    for mode, s in summary.items():
        print(f"{mode:12s} {s['step']:7.2f}±{s['step_sd']:4.2f} {s['rollout']:9.2f} {s['rollout_tok_s']:7.0f} "
              f"{s['ref']:6.2f} {s['fwd']:6.2f} {s['bwd']:6.2f} {s['lm_tokens']:9d} {s['flops']['total'] / 1e12:7.1f} "
              f"{100 * s['mfu']:5.1f}% {s['peak_gib']:8.1f}")
    if "ours" in summary and "trl" in summary:
        o, t = summary["ours"], summary["trl"]
        print(f"gpu_step_speedup_vs_trl: {t['step'] / o['step']:.3f}")
        print(f"gpu_fwd_bwd_speedup_vs_trl: {(t['fwd'] + t['bwd']) / (o['fwd'] + o['bwd']):.3f}")
        print(f"gpu_peak_memory_ratio_vs_trl: {o['peak_gib'] / t['peak_gib']:.3f}")
        print(f"gpu_ours_mfu: {o['mfu']:.3f}")
    if "ours_flex" in summary:
        print(f"gpu_ours_flex_mfu: {summary['ours_flex']['mfu']:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
