"""Spike, edge cases of the reload_weights route:
  A. tied embeddings (lm_head shares embed_tokens): is the CPU lm_head's oneDNN handle refreshed?
  B. prefix cache: a push without llm.reset_prefix_cache() -> stale KV for a repeated prompt?
  C. weights_path route: write a safetensors folder, reload_weights(weights_path=DIR).
Run: VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1 nice -n 19 venv/bin/python proof_edge.py
"""
import os
import sys
import tempfile
import time

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, Qwen2_5OmniThinkerForConditionalGeneration
from vllm import LLM, SamplingParams

MODEL = os.environ.get("MODEL", "/work/vllm-spike/small_tied")
torch.manual_seed(0)
tok = AutoTokenizer.from_pretrained(MODEL)
prompt_ids = tok("<|im_start|>user\nWhat colour is the ball?<|im_end|>\n<|im_start|>assistant\n").input_ids
full_ids = prompt_ids + tok("The ball is red, I think.").input_ids
P = len(prompt_ids)
hf = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(MODEL + "/thinker", dtype=torch.float32).eval()
print("HF tied:", hf.lm_head.weight.data_ptr() == hf.model.language_model.embed_tokens.weight.data_ptr())


@torch.no_grad()
def hf_lp(ids):
    x = torch.tensor([ids])
    lp = torch.log_softmax(hf(input_ids=x, attention_mask=torch.ones_like(x)).logits[0].float(), -1)
    return lp[:-1].gather(-1, x[0, 1:, None])[:, 0]


llm = LLM(model=MODEL, dtype="float32", enforce_eager=True, max_model_len=4096,
          limit_mm_per_prompt={"video": 1, "audio": 1, "image": 0}, seed=0)
cc = llm.llm_engine.vllm_config.cache_config
print("enable_prefix_caching:", cc.enable_prefix_caching, flush=True)


def v_prompt_lp(ids):
    out = llm.generate([{"prompt_token_ids": ids}], SamplingParams(max_tokens=1, prompt_logprobs=0),
                       use_tqdm=False)[0]
    return torch.tensor([out.prompt_logprobs[i][ids[i]].logprob for i in range(1, len(ids))])


def v_sample_err(tag, long_prompt=None):
    ids_p = long_prompt or prompt_ids
    sp = SamplingParams(n=4, max_tokens=12, temperature=1.0, logprobs=0, seed=7)
    out = llm.generate([{"prompt_token_ids": ids_p}], sp, use_tqdm=False)[0]
    worst = 0.0
    for c in out.outputs:
        ids = list(c.token_ids)
        v = torch.tensor([c.logprobs[i][ids[i]].logprob for i in range(len(ids))])
        h = hf_lp(ids_p + ids)[len(ids_p) - 1:]
        worst = max(worst, (v - h).abs().max().item())
    print(f"[{tag}] sampled-token logprobs max|vllm-hf| {worst:.2e}  (cached prefix tokens: "
          f"{out.num_cached_tokens})", flush=True)
    return worst


def prompt_err(tag):
    d = (v_prompt_lp(full_ids) - hf_lp(full_ids)).abs().max().item()
    print(f"[{tag}] prompt_logprobs max|vllm-hf| {d:.2e}", flush=True)
    return d


def ckpt_name(k):
    for a, b in (("model.language_model.", "thinker.model."), ("model.visual.", "thinker.visual."),
                 ("model.audio_tower.", "thinker.audio_tower."), ("lm_head.", "thinker.lm_head.")):
        if k.startswith(a):
            return b + k[len(a):]
    raise KeyError(k)


def lm_weights():
    return [(ckpt_name(k), v.detach()) for k, v in hf.state_dict().items()
            if k.startswith("model.language_model.") or k.startswith("lm_head.")]


def refresh_lm_head(model):
    """Re-run CPU GEMM dispatch for vocab layers whose weight is shared (tied)."""
    n = 0
    for name, m in model.named_modules():
        qm = getattr(m, "quant_method", None)
        if type(m).__name__ == "ParallelLMHead" and qm is not None:
            qm.process_weights_after_loading(m)
            n += 1
    return n


# long prompt so the prefix cache holds full blocks (block size 16 on CPU? print)
long_prompt = (prompt_ids * 4)[:64]
print("block_size:", cc.block_size, flush=True)
res = {}
res["before_prompt"] = prompt_err("before")
res["before_sample"] = v_sample_err("before", long_prompt)

# --- A: perturb embeddings only (tied with lm_head) + a layer ----------------------
with torch.no_grad():
    hf.model.language_model.embed_tokens.weight.mul_(1.5).add_(0.05 * torch.randn_like(hf.lm_head.weight))
    hf.model.language_model.layers[2].mlp.down_proj.weight.add_(0.05 * torch.randn(512, 1536))

t = time.perf_counter()
llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(lm_weights())})
print(f"[time] push {time.perf_counter() - t:.3f}s (no reset_prefix_cache yet)", flush=True)
# --- B: prefix cache hazard ----------------------------------------------------------
res["B_no_reset_sample"] = v_sample_err("B after push, NO prefix-cache reset", long_prompt)
llm.reset_prefix_cache()
res["A_prompt"] = prompt_err("A tied, after push + reset")
res["A_sample"] = v_sample_err("A tied, after push + reset", long_prompt)
if res["A_prompt"] > 1e-3:
    n = llm.apply_model(refresh_lm_head)
    print("refreshed ParallelLMHead modules:", n, flush=True)
    res["A_fixed_prompt"] = prompt_err("A tied, after lm_head refresh")
    res["A_fixed_sample"] = v_sample_err("A tied, after lm_head refresh", long_prompt)

# --- C: weights_path route --------------------------------------------------------------
with torch.no_grad():
    for p in hf.model.language_model.layers[4].parameters():
        p.add_(0.05 * torch.randn_like(p))
d = tempfile.mkdtemp(prefix="push_", dir="/work/vllm-spike")
t = time.perf_counter()
sd = {k: v.contiguous().clone() for k, v in lm_weights()}
if "thinker.lm_head.weight" in sd and hf.config.get_text_config().tie_word_embeddings:
    sd.pop("thinker.lm_head.weight")  # safetensors refuses shared tensors; vLLM skips it when tied
save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
t_save = time.perf_counter() - t
t = time.perf_counter()
llm.collective_rpc("reload_weights", kwargs={"weights_path": d})
llm.apply_model(refresh_lm_head)
llm.reset_prefix_cache()
print(f"[time] C: save {t_save:.3f}s, reload_weights(weights_path) {time.perf_counter() - t:.3f}s",
      flush=True)
res["C_prompt"] = prompt_err("C weights_path")
res["C_sample"] = v_sample_err("C weights_path", long_prompt)
print("RESULTS", {k: f"{v:.2e}" for k, v in res.items()})
