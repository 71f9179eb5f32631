"""Qwen3-Omni through vLLM 0.32 (issue 25 point 6), tiny demo-preset model: config fields patched in via
hf_overrides, then each modality's vLLM sampled-token log-probs vs the HF thinker's. Result (2026-12-03): ids equal,
video max |d| 0.19/0.44, audio 4.7e-4/6.8e-4, video+audio 0.31/0.10: not served by hs-rl's engine.
Run: VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1 /work/vllm-spike/venv/bin/python qwen3_check.py"""
import os, sys, time
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0"); os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
import torch
from hs_rl.tools.tiny_model import make_tiny_model
from hs_rl.tools.curriculum import make_curriculum
from hs_rl.data.convert import convert_file
from hs_rl.data.prompt_media import prepare_prompt
from hs_rl.data.arguments import DataArguments
from hs_rl.omni.loading import load_processor, load_thinker
model = str(make_tiny_model("/tmp/vllmcore_q3/model", preset="demo", family="qwen3_omni")["full"])
print("model", model, flush=True)
import json; c=json.load(open(f"{model}/config.json")); print(c["architectures"], c["thinker_config"]["text_config"].get("head_dim"), c["thinker_config"]["text_config"]["hidden_size"], c["thinker_config"]["text_config"]["num_attention_heads"])
data = make_curriculum("/tmp/vllmcore_q3/cur", seed=0, train_per_class=1, heldout_per_class=1)
records = convert_file(data["train_json"], media_root=data["root"])
proc = load_processor(model)
da = DataArguments(system_prompt="", video_max_frames=4, video_max_pixels=12544, video_min_pixels=3136)
rows = {m: prepare_prompt(next(r for r in records if r.modality == m), proc, da, keep_decoded=True)[0] for m in ("video","audio","video_audio")}
th = load_thinker(model, "float32").eval()
print([k for k,_ in th.named_parameters()][:3], [k for k,_ in th.named_parameters() if "layers" not in k and "blocks" not in k][:20])
from vllm import LLM, SamplingParams
def fix(cfg):
    tc = getattr(cfg, "thinker_config", None)
    if tc is None: return cfg
    vc = tc.vision_config
    if not hasattr(vc, "image_size"):
        import math
        vc.image_size = int(math.isqrt(vc.num_position_embeddings)) * vc.patch_size
        print("image_size", vc.image_size)
    for k, v in (("apply_vit_abs_pos_embed", True),):
        if not hasattr(vc, k): setattr(vc, k, v)
    return cfg
from hs_rl.omni.vllm_engine import collapse_placeholders
llm = LLM(model=model, dtype="float32", enforce_eager=True, max_model_len=2048, limit_mm_per_prompt={"video":1,"audio":1,"image":0}, seed=0, logprobs_mode="processed_logprobs", mm_processor_cache_gb=0, hf_overrides=fix)
tok = llm.get_tokenizer()
T = {k: tok.convert_tokens_to_ids(v) for k, v in (("video","<|video_pad|>"),("audio","<|audio_pad|>"),("vision_bos","<|vision_start|>"),("audio_bos","<|audio_start|>"),("audio_eos","<|audio_end|>"))}
print(T)
from hs_rl.omni.inputs import lm_inputs, rope_positions
for m, row in rows.items():
    ids = row.input_ids.tolist()
    mm, opt = {}, {}
    if row.has_video:
        mm["video"] = row.decoded["video"]; opt.update(fps=row.decoded["fps"], do_resize=False, do_sample_frames=False)
        if row.use_audio_in_video: opt.update(use_audio_in_video=True, audio_from_video_indices=[0], second_per_grid_ts=row.video_second_per_grid.tolist())
    if row.has_audio: mm["audio"] = (row.decoded["audio"], 16000)
    req = {"prompt_token_ids": collapse_placeholders(ids, row.use_audio_in_video, T), "multi_modal_data": mm, "mm_processor_kwargs": opt}
    try:
        out = llm.generate([req], SamplingParams(n=2, max_tokens=8, temperature=1.0, logprobs=0, seed=1), use_tqdm=False)[0]
    except Exception as e:
        print(m, "FAILED", type(e).__name__, str(e)[:300]); continue
    got = list(out.prompt_token_ids)
    print(m, "ids equal", got == ids, len(got), len(ids))
    if got != ids: continue
    for c in out.outputs:
        comp = list(c.token_ids)
        x = torch.tensor([ids + comp]); mask = torch.ones_like(x)
        with torch.no_grad():
            inp = lm_inputs(th, x, [row], use_cache=False, prompt_width=len(ids))
            lg = th(**inp, attention_mask=mask, position_ids=rope_positions(th, mask, [row], len(ids))).logits[0].float()
        hf = torch.log_softmax(lg[len(ids)-1:-1], -1).gather(-1, torch.tensor(comp)[:, None])[:, 0]
        v = torch.tensor([c.logprobs[i][t].logprob for i, t in enumerate(comp)])
        print(m, "max|d|", (v - hf).abs().max().item())
