"""Engine core in its own process (VLLM_ENABLE_V1_MULTIPROCESSING=1): which push routes cross the process boundary?"""
import os, tempfile, time
os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"; os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
import torch
from safetensors.torch import save_file

def main():
    from transformers import AutoTokenizer, Qwen2_5OmniThinkerForConditionalGeneration
    from vllm import LLM, SamplingParams
    M = "/work/vllm-spike/small"
    tok = AutoTokenizer.from_pretrained(M)
    ids = tok("<|im_start|>user\nWhat colour is the ball?<|im_end|>\n<|im_start|>assistant\nThe ball is red.").input_ids
    hf = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(M + "/thinker", dtype=torch.float32).eval()
    def hf_lp():
        x = torch.tensor([ids])
        with torch.no_grad():
            return torch.log_softmax(hf(input_ids=x).logits[0], -1)[:-1].gather(-1, x[0, 1:, None])[:, 0]
    llm = LLM(model=M, dtype="float32", enforce_eager=True, max_model_len=4096,
              limit_mm_per_prompt={"video": 1, "audio": 1, "image": 0}, seed=0)
    def err(tag):
        o = llm.generate([{"prompt_token_ids": ids}], SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False)[0]
        v = torch.tensor([o.prompt_logprobs[i][ids[i]].logprob for i in range(1, len(ids))])
        print(f"[{tag}] max|vllm-hf| {(v - hf_lp()).abs().max():.2e}", flush=True)
    def names():
        out = []
        for k, v in hf.state_dict().items():
            if k.startswith("model.language_model."): out.append(("thinker.model." + k[len("model.language_model."):], v))
            elif k.startswith("lm_head."): out.append(("thinker." + k, v))
        return out
    err("before")
    with torch.no_grad():
        hf.lm_head.weight.mul_(1.5)
    try:
        t = time.perf_counter()
        llm.collective_rpc("reload_weights", kwargs={"weights_iterator": names()})  # a list, not a generator
        llm.reset_prefix_cache(); print(f"[mp list push] {time.perf_counter()-t:.3f}s"); err("mp list push")
    except Exception as e:
        print("[mp list push] FAILED", type(e).__name__, str(e)[:300])
    with torch.no_grad():
        hf.lm_head.weight.mul_(1.5)
    d = tempfile.mkdtemp(dir="/work/vllm-spike", prefix="mp_push_")
    t = time.perf_counter()
    save_file({k: v.contiguous() for k, v in names()}, d + "/model.safetensors")
    llm.collective_rpc("reload_weights", kwargs={"weights_path": d})
    llm.reset_prefix_cache(); print(f"[mp weights_path push] {time.perf_counter()-t:.3f}s"); err("mp weights_path push")

if __name__ == "__main__":
    main()
