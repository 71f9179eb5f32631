"""Final spike proof: weight push + mixed video / audio / video-with-its-audio-track rows through vLLM-CPU with transformers 5.23,
prompts given as hs-rl's processor's token ids (placeholders already expanded), media as hs-rl decoded it.
Compares vLLM's prompt_logprobs of prompt+fixed completion with the HF thinker's fp32 log-probs.

Run: VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1 nice -n 19 venv/bin/python aiv_test.py [variant]
"""
import os
import sys
import traceback

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
import numpy as np
import torch
from transformers import AutoProcessor, Qwen2_5OmniThinkerForConditionalGeneration

from hs_rl.data.media import load_audio, load_video
from hs_rl.data.prompt_media import prepare_prompt, video_sampling_for
from hs_rl.data.records import Record
from hs_rl.data.arguments import DataArguments

MODEL = os.environ.get("MODEL", "/work/vllm-spike/small")
MEDIA = "/work/main/experiments/s1only_h128/data/curriculum/media"
proc = AutoProcessor.from_pretrained(MODEL)
data_args = DataArguments(video_fps=float(os.environ.get("FPS", "2.0")))
opts = ["A. red, low tone", "B. green, high tone", "C. green, low tone", "D. red, high tone"]
recs = {
    "video_audio": Record(id="va", task_type="t", modality="video_audio", question="What colour is the shape, and is "
                          "the tone low or high?", question_type="single_choice", answer="A", options=opts,
                          video=f"{MEDIA}/train_videoaudio_colourpitch_052.mp4"),
    "video": Record(id="v", task_type="t", modality="video", question="What colour is the shape?",
                    question_type="single_choice", answer="A", options=["A. red", "B. green"],
                    video=f"{MEDIA}/train_video_colour_042.mp4"),
    "audio": Record(id="a", task_type="t", modality="audio", question="Is the tone low or high?",
                    question_type="single_choice", answer="A", options=["A. low", "B. high"],
                    audio=f"{MEDIA}/train_audio_pitch_005.wav"),
}
completion = proc.tokenizer("<think>red shape, low tone</think><answer>A</answer>").input_ids

hf = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(MODEL + "/thinker", dtype=torch.float32).eval()
rows = {}
for name, rec in recs.items():
    media, _ = prepare_prompt(rec, proc, data_args)
    ids = media.input_ids.tolist()
    full = ids + completion
    x = torch.tensor([full])
    kw = dict(input_ids=x, attention_mask=torch.ones_like(x), use_audio_in_video=media.use_audio_in_video)
    for k in ("pixel_values_videos", "video_grid_thw", "video_second_per_grid", "input_features",
              "feature_attention_mask"):
        if getattr(media, k) is not None:
            kw[k] = getattr(media, k)
    with torch.no_grad():
        lp = torch.log_softmax(hf(**kw).logits[0].float(), -1)[:-1].gather(-1, x[0, 1:, None])[:, 0]
    # the media as hs-rl decoded it, for vLLM
    mm = {}
    if rec.video:
        clip = load_video(rec.video, video_sampling_for(proc, data_args))
        frames = clip.frames
        frames = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
        if frames.shape[1] == 3:  # (T, C, H, W) -> (T, H, W, C)
            frames = frames.transpose(0, 2, 3, 1)
        mm["video"] = frames.astype(np.uint8)
        fps = clip.sample_fps
    if rec.modality == "video_audio":
        mm["audio"] = (load_audio(rec.video), 16000)
    elif rec.modality == "audio":
        mm["audio"] = (load_audio(rec.audio), 16000)
    n_vid = int((media.input_ids == proc.tokenizer.convert_tokens_to_ids("<|VIDEO|>")).sum())
    n_aud = int((media.input_ids == proc.tokenizer.convert_tokens_to_ids("<|AUDIO|>")).sum())
    print(f"[{name}] hs-rl prompt {len(ids)} tokens ({n_vid} video, {n_aud} audio), frames "
          f"{mm.get('video', np.zeros(0)).shape}, fps {fps if rec.video else None}, "
          f"second_per_grid {media.video_second_per_grid}", flush=True)
    rows[name] = dict(ids=ids, full=full, hf_lp=lp, mm=mm, fps=fps if rec.video else None,
                      aiv=media.use_audio_in_video, P=len(ids), hf_kw={k: v for k, v in kw.items()
                                                                      if k not in ("input_ids", "attention_mask")})

from vllm import LLM, SamplingParams  # noqa: E402
if os.environ.get("HF_ROPE") == "1":
    import hf_rope_patch; hf_rope_patch.apply(); print("PATCHED get_mrope_input_positions")

llm = LLM(model=MODEL, dtype="float32", enforce_eager=True, max_model_len=8192,
          limit_mm_per_prompt={"video": 1, "audio": 1, "image": 0}, seed=0,
          mm_processor_cache_gb=0)
variant = sys.argv[1] if len(sys.argv) > 1 else "indices"


T = proc.tokenizer.convert_tokens_to_ids
VIDEO, AUDIO, VBOS, ABOS, AEOS = T("<|VIDEO|>"), T("<|AUDIO|>"), T("<|vision_bos|>"), T("<|audio_bos|>"), T("<|audio_eos|>")


def collapse(ids, aiv):
    """hs-rl's expanded ids -> one placeholder per media item, the form vLLM expands itself."""
    out, i, n = [], 0, len(ids)
    while i < n:
        t = ids[i]
        if aiv and t == ABOS and out and out[-1] == VBOS:  # <|vision_bos|><|audio_bos|>[V/A interleaved]<|audio_eos|>
            j = ids.index(AEOS, i)
            out.append(VIDEO)
            i = j + 1
        elif t in (VIDEO, AUDIO):
            j = i
            while j < n and ids[j] == t:
                j += 1
            out.append(t)
            i = j
        else:
            out.append(t)
            i += 1
    return out


def request(r):
    mpk = {}
    if r["fps"] is not None:
        mpk["fps"] = r["fps"]
        mpk["do_resize"] = False
        mpk["do_sample_frames"] = False
    if r["aiv"]:
        mpk["use_audio_in_video"] = True
        if "spg" in variant:  # vLLM's audio-in-video expansion reads second_per_grid_ts from these kwargs (default 1.0)
            mpk["second_per_grid_ts"] = [2.0 / r["fps"]]
        if "indices" in variant:
            mpk["audio_from_video_indices"] = [0]
    ids = collapse(r["full"], r["aiv"]) if variant.startswith("collapse") else r["full"]
    return {"prompt_token_ids": ids, "multi_modal_data": r["mm"], "mm_processor_kwargs": mpk}


def check(names):
    reqs = [request(rows[n]) for n in names]
    outs = llm.generate(reqs, SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False)
    for n, o in zip(names, outs):
        r = rows[n]
        full = r["full"]
        got = list(o.prompt_token_ids)
        same_ids = got == full
        if not same_ids:
            k = next((i for i in range(min(len(got), len(full))) if got[i] != full[i]), None)
            print(f"[{n}] vLLM CHANGED the ids: {len(got)} vs {len(full)}; first diff at {k}: "
                  f"vllm {got[k - 3:k + 12] if k is not None else None} hs-rl {full[k - 3:k + 12] if k is not None else None}")
            continue
        v = torch.tensor([o.prompt_logprobs[i][full[i]].logprob for i in range(1, len(full))])
        d = (v - r["hf_lp"]).abs()
        P = r["P"]
        print(f"[{n}] vLLM kept ids: {same_ids} ({len(o.prompt_token_ids)} vs {len(full)}); |vllm-hf| over "
              f"completion max {d[P - 1:].max():.2e}, over prompt max {d[:P - 1].max():.2e} mean "
              f"{d[:P - 1].mean():.2e}", flush=True)
        if d.max() > 1e-4:
            k = int((d > 1e-4).nonzero()[0])
            seg = torch.tensor(full[1:])
            print(f"   first |d|>1e-4 at target index {k + 1} (token {full[k + 1]}); tokens there "
                  f"{full[k - 2:k + 4]}; media span: first media tok {full.index(VBOS) if VBOS in full else None}, "
                  f"last AEOS {len(full) - 1 - full[::-1].index(AEOS) if AEOS in full else None}; "
                  f"max|d| before media {d[:full.index(VBOS)].max() if VBOS in full else None}")




@torch.no_grad()
def hf_score(r, comp):
    x = torch.tensor([r["ids"] + comp])
    lp = torch.log_softmax(hf(input_ids=x, attention_mask=torch.ones_like(x), **r["hf_kw"]).logits[0].float(), -1)
    return lp[:-1].gather(-1, x[0, 1:, None])[:, 0][r["P"] - 1:]


def sample_and_compare(tag, seed=11):
    names = ["video", "audio", "video_audio"]
    reqs = []
    for n in names:
        q = request(rows[n])
        q["prompt_token_ids"] = collapse(rows[n]["ids"], rows[n]["aiv"])  # prompt only
        reqs.append(q)
    sp = SamplingParams(n=4, max_tokens=16, temperature=1.0, logprobs=0, seed=seed)
    outs = llm.generate(reqs, sp, use_tqdm=False)
    res = {}
    for n, o in zip(names, outs):
        assert list(o.prompt_token_ids) == rows[n]["ids"], f"{n}: vLLM's expanded prompt differs from hs-rl's"
        ds = []
        for c in o.outputs:
            comp = list(c.token_ids)
            v = torch.tensor([c.logprobs[i][comp[i]].logprob for i in range(len(comp))])
            ds.append((v - hf_score(rows[n], comp)).abs())
        d = torch.cat(ds)
        res[n] = (d.max().item(), d.mean().item())
        print(f"[{tag}] {n:12s} ids==hs-rl; {len(ds)} samples x {len(ds[0])} tokens; |vllm-hf| max {d.max():.2e} "
              f"mean {d.mean():.2e}; first sample {list(o.outputs[0].token_ids)[:8]}", flush=True)
    return res


def ckpt_name(k):
    for a, b in (("model.language_model.", "thinker.model."), ("model.visual.", "thinker.visual."),
                 ("model.audio_tower.", "thinker.audio_tower."), ("lm_head.", "thinker.lm_head.")):
        if k.startswith(a):
            return b + k[len(a):]
    raise KeyError(k)


r0 = sample_and_compare("step 0")
# "optimizer step": perturb LM + both towers (towers only matter if trained; push them too here)
torch.manual_seed(1)
with torch.no_grad():
    hf.lm_head.weight.mul_(1.3)
    for k, p in hf.named_parameters():
        if "layers" in k or "blocks" in k:
            p.add_(0.01 * torch.randn_like(p))
import time
t = time.perf_counter()
llm.collective_rpc("reload_weights", kwargs={"weights_iterator": ((ckpt_name(k), v) for k, v in hf.state_dict().items())})
llm.reset_prefix_cache()          # KV blocks computed with the old weights
llm.llm_engine.reset_encoder_cache()  # scheduler-side encoder-output bookkeeping (runner side is reset by reload)
print(f"[push] full thinker {time.perf_counter() - t:.3f}s", flush=True)
r1 = sample_and_compare("step 1 (after push)")
worst = max(v[0] for v in list(r0.values()) + list(r1.values()))
print("FINAL", "PASS" if worst < 1e-3 else "FAIL", f"worst {worst:.2e}")
