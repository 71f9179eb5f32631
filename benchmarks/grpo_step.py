"""One GRPO step, three ways, on the same model and data: where the time goes, and how much ours saves.

    python benchmarks/grpo_step.py --quick          # tiny + small presets, G=8, < 5 min on 2 CPU cores
    python benchmarks/grpo_step.py --steps 3        # more measured steps
    python benchmarks/grpo_step.py --family qwen3_omni --quick   # the same on tiny/small Qwen3-Omni presets

With `--family qwen3_omni` the router aux loss is off in every mode (`router_aux_loss_coef: 0`: the baselines
compute none, so all three do the same work; ours then uses the shared prefix as with Qwen2.5-Omni).

Modes (each runs in its own subprocess, so its peak RSS is its own; same weights, same records, same order):

- `upstream` — the layout of the original R1-Omni / HumanOmni GRPO code (baseline, not product code):
  media decoded and processed in the step on the training process (`hs_rl.data.dataset.prepare_prompt`); for each
  prompt, G sequential `generate` calls each given the raw media (the encoders and the prompt prefill run G
  times); reference and policy log-probs per prompt over its G rows with the media repeated G times (encoders
  re-run in each pass) and full-vocabulary logits + log_softmax.
- `trl` — plain TRL with a minimal omni override (baseline): media decoded in the step; the G duplicated rows
  of every prompt batched into ONE `generate` call with the media duplicated G times; reference and policy
  log-probs over all rows with the duplicated media (encoders in every forward), TRL's fused/chunked LM head,
  no prefix sharing.
- `ours` — the real `OmniGRPOTrainer` (`build_trainer`, `trainer.train()`): media decoded and processed in a
  DataLoader worker, one `PromptMedia` shared by a group's G rows, encoders run once per prompt and cached,
  generation from one prefill per group, log-prob/loss forwards with the shared prompt prefix.

Both baselines time the same building blocks (prepare_prompt, HF generate, the thinker's forward, backward,
the trainer's own reward functions) and finish with an AdamW step. Phases: media (decode + processor, or for
ours the time the step waits on the DataLoader), generation (encoders + prefill + decoding), log-probs (all
forward passes for reference and loss), backward, rewards, other (optimizer, bookkeeping). The first step of
each mode is a warm-up and is not counted; figures are those of the fastest measured step (best of N,
with its own phases; the mean step time is printed too), as the machine may be shared. Rollout tokens/s = completion tokens / generation time.

The last three lines are the ratios, taken as the worst over the presets run:
    rollout_speedup_vs_upstream: (ours rollout tokens/s) / (upstream rollout tokens/s)
    step_speedup_vs_trl: (trl step time) / (ours step time)
    media_fraction_of_step: (ours media time) / (ours step time)
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PHASES = ("media", "generation", "logps", "backward", "rewards", "other")
MODES = ("upstream", "trl", "ours")


# ------------------------------------------------------------------------------------------- set-up

def prepare(workdir: Path, preset: str, prompts_needed: int, family: str = "qwen2_5_omni"):
    """Model folder and a JSONL of `prompts_needed` video_audio records (the longest prompts of the sample data)."""
    from hs_rl.data.convert import convert_file
    from hs_rl.data.records import write_records
    from hs_rl.tools.sample_data import make_sample_data
    from hs_rl.tools.tiny_model import make_tiny_model

    name = f"model-{preset}" if family == "qwen2_5_omni" else f"model-{family}-{preset}"
    model = make_tiny_model(workdir / name, preset=preset, family=family)
    data = make_sample_data(workdir / "data")
    records = [r for r in convert_file(data["train_json"], media_root=data["media_root"])
               if r.modality == "video_audio"]
    chosen = [records[i % len(records)] for i in range(prompts_needed)]
    path = workdir / f"records-{prompts_needed}.jsonl"
    write_records(chosen, path)
    return model["full"], path, chosen


def make_trainer(model_dir: Path, data_file: Path, out: Path, args, workers: int):
    from hs_rl.grpo.config import DataArguments, OmniGRPOConfig, OmniModelConfig
    from hs_rl.train import build_trainer

    data = DataArguments(dataset=str(data_file), video_max_frames=args.frames, video_max_pixels=25088,
                         video_min_pixels=3136)
    config = OmniGRPOConfig(
        output_dir=str(out), loss_type="grpo", beta=0.04, num_generations=args.G,
        per_device_train_batch_size=args.prompts * args.G, max_completion_length=args.completion,
        max_steps=args.steps + 1, use_cpu=True, bf16=False, report_to=[], seed=0, save_strategy="no",
        logging_steps=1, shuffle_dataset=False, reward_funcs=["format", "accuracy"], learning_rate=1e-6,
        gradient_checkpointing=False, dataloader_num_workers=workers, completions_log=False, temperature=1.0,
        disable_tqdm=True, router_aux_loss_coef=0.0 if args.family == "qwen3_omni" else None)
    model = OmniModelConfig(model_name_or_path=str(model_dir), dtype="float32")
    trainer = build_trainer(data, config, model)
    # A random model samples media placeholder/boundary ids; a plain HF forward would then count them as media slots.
    # Suppressed in every mode alike, so the baselines' forwards stay valid and all modes sample the same way.
    from hs_rl.grpo.families import get_family

    tokenizer = trainer.processing_class.tokenizer
    trainer.generation_config.suppress_tokens = [tokenizer.convert_tokens_to_ids(t)
                                                 for t in get_family(args.family).special_tokens.values()]
    return trainer


class Clock:
    """Accumulated seconds per phase."""

    def __init__(self):
        self.t = defaultdict(float)

    def wrap(self, name, fn):
        def timed(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.t[name] += time.perf_counter() - start
        return timed

    def phase(self, name):
        clock = self

        class _P:
            def __enter__(self):
                self.s = time.perf_counter()

            def __exit__(self, *exc):
                clock.t[name] += time.perf_counter() - self.s
        return _P()


# ------------------------------------------------------------------------------------------- ours

def run_ours(trainer, args) -> tuple[list[dict], dict]:
    from transformers import TrainerCallback

    clock = Clock()
    tokens = {"n": 0}
    lengths = {}
    generate = trainer._generate_single_turn

    def counted(prompt_ids, *a, **k):
        out = generate(prompt_ids, *a, **k)
        tokens["n"] += sum(len(c) for c in out[0])
        lengths.setdefault("prompt", []).extend(len(p) for p in prompt_ids)
        lengths.setdefault("completion", []).extend(len(c) for c in out[0])
        return out

    trainer._generate_single_turn = clock.wrap("generation", counted)
    trainer._get_per_token_logps_and_entropies = clock.wrap("logps", trainer._get_per_token_logps_and_entropies)
    trainer._calculate_rewards = clock.wrap("rewards", trainer._calculate_rewards)
    trainer.accelerator.backward = clock.wrap("backward", trainer.accelerator.backward)
    trainer.get_batch_samples = clock.wrap("media", trainer.get_batch_samples)
    steps: list[dict] = []
    state = {"last": None, "snap": {}, "tokens": 0}

    class StepTimer(TrainerCallback):
        def on_train_begin(self, *a, **k):
            state["last"] = time.perf_counter()

        def on_step_end(self, *a, **k):
            now = time.perf_counter()
            phases = {p: clock.t[p] - state["snap"].get(p, 0.0) for p in PHASES if p != "other"}
            total = now - state["last"]
            phases["other"] = total - sum(phases.values())
            steps.append({"step_time": total, "phases": phases, "tokens": tokens["n"] - state["tokens"]})
            state.update(last=now, snap=dict(clock.t), tokens=tokens["n"])

    trainer.add_callback(StepTimer())
    trainer.train()
    return steps, lengths


# ------------------------------------------------------------------------------------------- baselines

def _media_kwargs(rows, repeat: int):
    """Raw media of `rows`, each repeated `repeat` times, as the thinker's forward/generate take them."""
    import torch

    out = {}
    if all(r.has_video for r in rows):
        out["pixel_values_videos"] = torch.cat([r.pixel_values_videos for r in rows for _ in range(repeat)])
        out["video_grid_thw"] = torch.cat([r.video_grid_thw for r in rows for _ in range(repeat)])
        out["video_second_per_grid"] = torch.cat([r.video_second_per_grid for r in rows for _ in range(repeat)])
    if all(r.has_audio for r in rows):
        frames = max(r.input_features.shape[-1] for r in rows)
        pad = torch.nn.functional.pad
        out["input_features"] = torch.cat([pad(r.input_features, (0, frames - r.input_features.shape[-1]))
                                           for r in rows for _ in range(repeat)])
        out["feature_attention_mask"] = torch.cat([pad(r.feature_attention_mask, (0, frames - r.input_features.shape[-1]))
                                                   for r in rows for _ in range(repeat)])
    out["use_audio_in_video"] = rows[0].use_audio_in_video
    return out


def _left_pad(seqs, pad_id):
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.as_tensor(s)
        mask[i, width - len(s):] = 1
    return ids, mask


def _completions(sequences, width, eos_ids, completion_len, pad_id):
    """Right-padded completion ids and mask, cut after the first EOS (as TRL does)."""
    import torch

    comp = sequences[:, width:]
    rows = []
    for c in comp.tolist():
        rows.append(c[: next((i + 1 for i, t in enumerate(c) if t in eos_ids), len(c))])
    ids = torch.full((len(rows), completion_len), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), completion_len), dtype=torch.long)
    for i, c in enumerate(rows):
        ids[i, :len(c)] = torch.as_tensor(c, dtype=torch.long)
        mask[i, :len(c)] = 1
    return ids, mask, rows


def _full_logits_logps(model, ids, mask, media, temperature, width):
    """Upstream-style per-token log-probs: full-vocabulary logits of the whole sequence, then log_softmax."""
    import torch

    logits = model(input_ids=ids, attention_mask=mask, **media).logits[:, width - 1:-1] / temperature
    return torch.log_softmax(logits, dim=-1).gather(-1, ids[:, width:, None])[..., 0]


def _fused_logps(model, ids, mask, media, width):
    """TRL-style per-token log-probs with the fused/chunked LM head TRL patched onto the model."""
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :width] = -100
    return model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True, **media).log_probs[:, width - 1:]


def run_baseline(trainer, records, args, mode: str) -> tuple[list[dict], dict]:
    import torch
    from hs_rl.data.dataset import prepare_prompt
    from hs_rl.grpo.omni_inputs import thinker_of

    policy = thinker_of(trainer.model)
    ref = trainer.ref_model
    processor = trainer.processing_class
    data_args = trainer._bench_data_args
    gen = trainer.generation_config
    pad_id = processor.tokenizer.pad_token_id
    eos = set(trainer.eos_token_ids)
    beta, temperature, G = trainer.beta, trainer.temperature, args.G
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-6)
    policy.train()
    steps, lengths = [], {"prompt": [], "completion": []}
    for step in range(args.steps + 1):
        clock = Clock()
        start = time.perf_counter()
        chunk = records[step * args.prompts:(step + 1) * args.prompts]
        with clock.phase("media"):  # decode + processor, on the training process, in the step
            prepared = [prepare_prompt(r, processor, data_args) for r in chunk]
        rows = [p[0] for p in prepared]
        lengths["prompt"] += [r.input_ids.numel() for r in rows for _ in range(G)]
        with clock.phase("generation"), torch.no_grad():
            if mode == "upstream":  # G sequential generate calls per prompt, raw media each time
                sequences = []
                for row in rows:
                    for _ in range(G):
                        policy.model.rope_deltas = None
                        out = policy.generate(input_ids=row.input_ids[None],
                                              attention_mask=torch.ones_like(row.input_ids[None]),
                                              generation_config=gen, **_media_kwargs([row], 1))
                        sequences.append(out[0, row.input_ids.numel():].tolist())
                prompt_lists = [row.input_ids.tolist() for row in rows for _ in range(G)]
            else:  # one batched generate over the G duplicated rows of every prompt, media duplicated G times
                prompt_lists = [row.input_ids.tolist() for row in rows for _ in range(G)]
                ids, mask = _left_pad(prompt_lists, pad_id)
                policy.model.rope_deltas = None
                out = policy.generate(input_ids=ids, attention_mask=mask, generation_config=gen,
                                      **_media_kwargs(rows, G))
                sequences = out[:, ids.shape[1]:].tolist()
            policy.model.rope_deltas = None
        # completions, cut at EOS, right-padded; full sequences = left-padded prompts + completions
        seq_t = torch.full((len(sequences), max(len(s) for s in sequences)), pad_id, dtype=torch.long)
        for i, s in enumerate(sequences):
            seq_t[i, :len(s)] = torch.as_tensor(s)
        comp_ids, comp_mask, comp_rows = _completions(seq_t, 0, eos, args.completion, pad_id)
        tokens = int(comp_mask.sum())
        lengths["completion"] += [len(c) for c in comp_rows]
        with clock.phase("rewards"):
            texts = processor.tokenizer.batch_decode(comp_rows, skip_special_tokens=True)
            inputs = [{"prompt": msgs, "id": r.id, "task_type": r.task_type, "modality": r.modality,
                       "question_type": r.question_type, "answer": r.answer, "options": list(r.options)}
                      for (_, msgs), r in zip(prepared, chunk) for _ in range(G)]
            prompts = [x["prompt"] for x in inputs]
            completions = [[{"role": "assistant", "content": t}] for t in texts]
            rewards = trainer._calculate_rewards(inputs, prompts, completions, comp_rows)
            weights = torch.as_tensor(trainer.reward_weights, dtype=rewards.dtype)
            reward = (rewards.nan_to_num(0.0) * weights).sum(-1).view(-1, G)
            adv = ((reward - reward.mean(1, keepdim=True)) / (reward.std(1, keepdim=True) + 1e-4)).view(-1)
        p_ids, p_mask = _left_pad(prompt_lists, pad_id)
        width = p_ids.shape[1]
        ids, mask = torch.cat([p_ids, comp_ids], 1), torch.cat([p_mask, comp_mask], 1)
        loss_total = 0.0
        parts = ([(slice(i * G, (i + 1) * G), [rows[i]]) for i in range(len(rows))] if mode == "upstream"
                 else [(slice(0, len(prompt_lists)), rows)])
        for sl, part_rows in parts:
            media = _media_kwargs(part_rows, G)
            with clock.phase("logps"):
                with torch.no_grad():
                    ref_lp = (_full_logits_logps(ref, ids[sl], mask[sl], media, temperature, width)
                              if mode == "upstream" else _fused_logps(ref, ids[sl], mask[sl], media, width))
                policy.model.rope_deltas = None
                lp = (_full_logits_logps(policy, ids[sl], mask[sl], media, temperature, width)
                      if mode == "upstream" else _fused_logps(policy, ids[sl], mask[sl], media, width))
                policy.model.rope_deltas = None
                m = comp_mask[sl].float()
                kl = torch.exp(ref_lp - lp) - (ref_lp - lp) - 1
                per_token = -(torch.exp(lp - lp.detach()) * adv[sl, None]) + beta * kl
                loss = ((per_token * m).sum(-1) / m.sum(-1).clamp(min=1)).sum() / len(prompt_lists)
            with clock.phase("backward"):
                loss.backward()
            loss_total += float(loss)
        with clock.phase("other"):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        total = time.perf_counter() - start
        phases = {p: clock.t.get(p, 0.0) for p in PHASES}
        phases["other"] += total - sum(phases.values())
        steps.append({"step_time": total, "phases": phases, "tokens": tokens, "loss": loss_total})
    return steps, lengths


# ------------------------------------------------------------------------------------------- driver

def child(args) -> None:
    import torch

    torch.manual_seed(0)
    workdir = Path(args.workdir)
    model_dir, data_file, records = prepare(workdir, args.preset, args.prompts * (args.steps + 1), args.family)
    out = workdir / f"out-{args.family}-{args.preset}-{args.mode}"
    trainer = make_trainer(model_dir, data_file, out, args, workers=1 if args.mode == "ours" else 0)
    from hs_rl.grpo.config import DataArguments

    trainer._bench_data_args = DataArguments(dataset=str(data_file), video_max_frames=args.frames,
                                             video_max_pixels=25088, video_min_pixels=3136)
    if args.mode == "ours":
        steps, lengths = run_ours(trainer, args)
    else:
        steps, lengths = run_baseline(trainer, records, args, args.mode)
    params = sum(p.numel() for p in trainer.model.parameters())
    result = {
        "mode": args.mode, "preset": args.preset, "params": params, "steps": steps, "lengths": lengths,
        "shared_prefix": bool(getattr(trainer, "shared_prefix", False)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
    Path(args.json).write_text(json.dumps(result))


def summarize(result: dict) -> dict:
    """The fastest measured step (best of N: the figure least disturbed by other load on a shared machine),
    with its own phases, plus the mean step time of all measured steps."""
    measured = result["steps"][1:] or result["steps"]
    best = min(measured, key=lambda s: s["step_time"])
    phases = best["phases"]
    return {"step_time": best["step_time"], "phases": phases, "tokens": best["tokens"],
            "mean_step_time": sum(s["step_time"] for s in measured) / len(measured),
            "rollout_tps": best["tokens"] / phases["generation"] if phases["generation"] else float("nan")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 measured steps per mode (under 5 minutes on 2 cores)")
    parser.add_argument("--presets", default="tiny,small")
    parser.add_argument("--G", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=2, help="distinct prompts per step")
    parser.add_argument("--completion", type=int, default=32, help="max completion tokens")
    parser.add_argument("--frames", type=int, default=4, help="video_max_frames")
    parser.add_argument("--steps", type=int, default=None, help="measured steps (after one warm-up)")
    parser.add_argument("--workdir", default="/tmp/hs_rl_bench")
    parser.add_argument("--family", default="qwen2_5_omni", choices=("qwen2_5_omni", "qwen3_omni"),
                        help="model family of the presets")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 3 if args.quick else 6
    if args.mode:
        child(args)
        return 0
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    began = time.time()
    print(f"GRPO step benchmark ({args.family}): G={args.G}, {args.prompts} prompts/step, max completion {args.completion} tokens, "
          f"{args.steps} measured step(s) after 1 warm-up, torch threads={os.cpu_count()}, CPU only")
    ratios = defaultdict(list)
    for preset in args.presets.split(","):
        summaries = {}
        for mode in MODES:
            path = workdir / f"result-{args.family}-{preset}-{mode}.json"
            cmd = [sys.executable, __file__, "--mode", mode, "--preset", preset, "--json", str(path),
                   "--family", args.family,
                   "--G", str(args.G), "--prompts", str(args.prompts), "--completion", str(args.completion),
                   "--frames", str(args.frames), "--steps", str(args.steps), "--workdir", str(workdir)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
                raise SystemExit(f"mode {mode} on {preset} failed")
            result = json.loads(path.read_text())
            summaries[mode] = s = summarize(result)
            lengths = result["lengths"]
            prompt_mean = sum(lengths["prompt"]) / len(lengths["prompt"])
            comp_mean = sum(lengths["completion"]) / len(lengths["completion"])
            ph = s["phases"]
            print(f"[{preset} {result['params'] / 1e6:.1f}M params] {mode:8s} step {s['step_time']:7.2f}s "
                  f"(mean {s['mean_step_time']:.2f}s) | "
                  + " ".join(f"{p} {ph[p]:.2f}" for p in PHASES)
                  + f" | rollout {s['rollout_tps']:7.1f} tok/s ({s['tokens']:.0f} tok) | prompt {prompt_mean:.0f} tok,"
                  f" completion {comp_mean:.1f} tok (x{prompt_mean / max(comp_mean, 1e-9):.1f}) | peak RSS "
                  f"{result['peak_rss_mb']:.0f} MB (+workers {result['peak_rss_children_mb']:.0f} MB)"
                  + (f" | shared_prefix={result['shared_prefix']}" if mode == "ours" else ""), flush=True)
        ours, up, trl = summaries["ours"], summaries["upstream"], summaries["trl"]
        r = {"rollout_speedup_vs_upstream": ours["rollout_tps"] / up["rollout_tps"],
             "step_speedup_vs_trl": trl["step_time"] / ours["step_time"],
             "media_fraction_of_step": ours["phases"]["media"] / ours["step_time"]}
        print(f"[{preset}] " + ", ".join(f"{k}={v:.3f}" for k, v in r.items())
              + f"; step speed-up vs upstream {up['step_time'] / ours['step_time']:.2f}x", flush=True)
        for k, v in r.items():
            ratios[k].append(v)
    print(f"total wall time {time.time() - began:.0f}s; final lines = worst over presets {args.presets}")
    print(f"rollout_speedup_vs_upstream: {min(ratios['rollout_speedup_vs_upstream']):.3f}")
    print(f"step_speedup_vs_trl: {min(ratios['step_speedup_vs_trl']):.3f}")
    print(f"media_fraction_of_step: {max(ratios['media_fraction_of_step']):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
