"""Which text head_dims vLLM-CPU attention accepts, and whether the log-probs match HF fp32."""
import os, sys
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0"); os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
import torch
from vllm import LLM, SamplingParams
from transformers import Qwen2_5OmniThinkerForConditionalGeneration
ids = list(range(10, 200))
try:
    llm = LLM(model=sys.argv[1], dtype="float32", enforce_eager=True, max_model_len=4096,
              limit_mm_per_prompt={"video": 1, "audio": 1, "image": 0}, seed=0)
    o = llm.generate([{"prompt_token_ids": ids}], SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False)[0]
    v = torch.tensor([o.prompt_logprobs[i][ids[i]].logprob for i in range(1, len(ids))])
    hf = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(sys.argv[1] + "/thinker", dtype=torch.float32).eval()
    with torch.no_grad():
        x = torch.tensor([ids]); lp = torch.log_softmax(hf(input_ids=x).logits[0], -1)[:-1].gather(-1, x[0, 1:, None])[:, 0]
    print("HEADDIM OK", sys.argv[1:], "max|vllm-hf|", (v - lp).abs().max().item())
except Exception as e:
    print("HEADDIM FAIL", sys.argv[1:], type(e).__name__, str(e)[:300])
