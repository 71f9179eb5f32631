"""One GRPO step, several ways, on the same model and data: where the time goes, and how much ours saves.

    python benchmarks/grpo_step.py --quick --recipe   # recipe settings (below), 5 measured steps, < 8 min on 2 cores
    python benchmarks/grpo_step.py --quick            # tiny + small presets, G=8, 3 measured steps, < 5 min on 2 cores
    python benchmarks/grpo_step.py --steps 8          # more measured steps
    python benchmarks/grpo_step.py --family qwen3_omni --quick   # the same on tiny/small Qwen3-Omni presets
    python benchmarks/grpo_step.py --quick --presets small --modes trl,ours,vllm   # + vLLM rollouts (vLLM installed)

With `--family qwen3_omni` the router aux loss is off in every mode (`router_aux_loss_coef: 0`: the baselines
compute none, so all do the same work); ours runs the plain per-row forward there (packed groups refuse
Qwen3-Omni's DeepStack inputs, see hs_rl/grpo/prefix_sharing.py).

On a machine shared with other jobs, run it with OMP_NUM_THREADS=1 (one torch thread per mode process): with
two threads on two cores one of which is busy, torch's thread pool waits on the busy core and a step's time
varies several-fold; interleaving then evens the bias out between modes, but not the spread.

Every mode runs in its own process, built once (same weights, same records, same order), and the modes take
their steps interleaved: step k of every mode runs before step k+1 of any, in an order rotated each step, so a
burst of foreign load on a shared machine hits every mode alike. Completions have a fixed length in every mode
(EOS suppressed in sampling, `max_completion_length` tokens each), so every mode does the same work per step.
The warm-up step's completions are 8 tokens long in every mode (WARMUP_COMPLETION): it runs every phase once
(allocations, lazy initialisation) for less time than a measured step.
The LM head scores only completion positions in every mode (TRL's compact path, which it takes on GPU; on CPU it
would score every prompt position too), so the comparison is the one a GPU run would see. The first step of
each mode is a warm-up; the rest are reported as mean ± sd, with the phases of the mean. Peak memory counts every
process of a mode: the training process's peak RSS (VmHWM) plus each DataLoader worker's peak private memory
(USS, sampled every 0.5 s; a forked worker's RSS also counts the trainer's pages it shares copy-on-write, which
the trainer's RSS already holds: both worker figures are printed).

Modes:
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
  generation from one prefill per group, log-prob/loss forwards with each group packed (prompt once), a
  reference model that holds the policy's frozen towers instead of a copy (`reference_shares_frozen`; the
  baselines keep TRL's full copy).
- `ours_noshare` (`--recipe`) — the same trainer with `shared_prefix: false`: what packing alone buys.
- `vllm` (`--modes ...,vllm`) — the same trainer with `use_vllm: true`: each step's G completions per prompt come
  from a vLLM engine in the mode's process (hs_rl.omni.vllm_engine), the policy's weights pushed into it before each
  generation; everything else is ours. Its generation phase includes the push (printed apart, with the engine's
  log-prob drift from the trainer's). The same tokens are kept out of its samples as in the other modes (min_tokens
  = the completion length, a -100 logit bias on the media ids). vLLM's CPU attention needs heads of 32 or more:
  presets `demo`, `small`, `recipe`, not `tiny`. Run the parent with a Python that has vLLM (every mode then runs on
  it); on CPU the engine is vLLM's CPU build, so its figures say nothing about GPU speed.

`--recipe`: the stage YAMLs' settings scaled to a CPU — gradient checkpointing on in every mode, one group of
G=8 per micro-batch (one prompt per step), beta 0.1, loss grpo, prompt/completion ≈ 6 with media filling most of
the prompt as in the recipe (the sample set's shortest questions, no system turn, each with a 3-s clip of 224×112
at 8 fps and its audio track, sampled at 2 fps: 96 video + 75 audio of about 280 tokens; 42-token completions),
the `recipe` proxy model (hs_rl.tools.tiny_model: the real 152,064-token vocabulary, encoder/LM parameters 0.18
against 0.17 in the 7B; its transformer body weighs 0.6 of its LM head against about 12 in the 7B, so the shared,
unpackable head work is a much larger share of the step than on the real model, while its towers cost more per
media token beside its small body than the 7B's do), fp32 on CPU. Modes trl, ours_noshare, ours. It ends with
    recipe_step_speedup_vs_trl: (trl mean step time) / (ours mean step time)
    recipe_peak_memory_ratio_vs_trl: (ours peak memory, all processes) / (trl peak memory, all processes)
    recipe_shared_prefix_active: 1 if every loss and reference forward of ours ran packed, checked by counting
        the tokens that entered the LM body: P - 1 + G*C per pass for ours against G*(P + C) for trl, every step,
        with every loss pass of ours under gradient checkpointing

Both baselines time the same building blocks (prepare_prompt, HF generate, the thinker's forward, backward,
the trainer's own reward functions) and finish with the fused AdamW step the Trainer gives ours. Phases: media
(decode + processor, or for ours the time the step waits on the DataLoader), generation (encoders + prefill +
decoding), ref (the reference model's forward), logps (the policy's forwards), backward, optimizer, rewards,
other (bookkeeping). Rollout tokens/s = completion tokens / generation time. Every mode also prints the tokens
that entered the LM body per step in each kind of pass (prefill, decode, reference, loss) with the body's
forward seconds, and how often the video and audio towers ran.

Without `--recipe` the last three lines are the ratios of the means, taken as the worst over the presets run:
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
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PHASES = ("media", "generation", "ref", "logps", "backward", "optimizer", "rewards", "other")
MODES = ("upstream", "trl", "ours")
RECIPE_MODES = ("trl", "ours_noshare", "ours")
VLLM_MODE = "vllm"  # ours with use_vllm: true, only when asked (--modes)
ALL_MODES = (*MODES, "ours_noshare", VLLM_MODE)
STEP_TAG, DONE_TAG = "@@STEP ", "@@DONE "


# ------------------------------------------------------------------------------------------- set-up

WARMUP_COMPLETION = 8  # the warm-up step's completion length, every mode alike: every phase runs, at less cost
RECIPE_CLIP = {"seconds": 3.0, "fps": 8, "size_wh": (224, 112)}  # 6 frames at 2 fps: 96 video + 75 audio tokens


def prepare(workdir: Path, preset: str, prompts_needed: int, family: str = "qwen2_5_omni", recipe: bool = False):
    """Model folder and a JSONL of `prompts_needed` video_audio records of the sample data.

    `recipe`: the records with the shortest questions, each with its clip replaced by a longer, larger one of its
    own (RECIPE_CLIP, with an audio track), so that media fills most of the prompt as in the recipe (the sample
    clips give 8 video + 26 audio tokens of a 222-token prompt)."""
    import dataclasses

    import numpy as np

    from hs_rl.data.convert import convert_file
    from hs_rl.data.records import write_records
    from hs_rl.tools.sample_data import make_sample_data, write_clip
    from hs_rl.tools.tiny_model import make_tiny_model

    name = f"model-{preset}" if family == "qwen2_5_omni" else f"model-{family}-{preset}"
    model = make_tiny_model(workdir / name, preset=preset, family=family)
    data = make_sample_data(workdir / "data")
    records = [r for r in convert_file(data["train_json"], media_root=data["media_root"])
               if r.modality == "video_audio"]
    if recipe:  # the shortest questions: with the longer clips media is then about 64 % of a prompt (171 of 269)
        records.sort(key=lambda r: len(r.question) + sum(len(o) for o in r.options))
    chosen = [records[i % len(records)] for i in range(prompts_needed)]
    path = workdir / f"records-{prompts_needed}{'-recipe' if recipe else ''}.jsonl"
    if recipe:
        width, height = RECIPE_CLIP["size_wh"]
        clips = workdir / f"recipe-clips-{RECIPE_CLIP['seconds']:g}s-{RECIPE_CLIP['fps']}fps-{width}x{height}"
        clips.mkdir(exist_ok=True)
        for i, record in enumerate(chosen):
            clip = clips / f"clip_{i:02d}.mp4"
            if not clip.exists():  # written whole, then renamed: a clip that exists is complete
                partial = clip.with_name(f".{clip.name}.partial.mp4")
                write_clip(partial, i, np.random.default_rng(i), with_audio=True, **RECIPE_CLIP)
                partial.replace(clip)
            chosen[i] = dataclasses.replace(record, id=f"{record.id}-long{i}", video=str(clip))
    if not path.exists():  # the parent writes it; the mode processes, started together, only read it
        write_records(chosen, path)  # atomic already: a reader never sees half a file
    return model["full"], path, chosen


def make_trainer(model_dir: Path, data_file: Path, out: Path, args, workers: int, shared_prefix: bool = True,
                 reference_shares_frozen: bool = True, use_vllm: bool = False):
    from hs_rl.data.arguments import DataArguments
    from hs_rl.grpo.config import OmniGRPOConfig, OmniModelConfig
    from hs_rl.train import build_trainer

    data = DataArguments(dataset=str(data_file), video_max_frames=args.frames, video_max_pixels=25088,
                         video_min_pixels=3136, **_prompt_options(args))
    config = OmniGRPOConfig(
        output_dir=str(out), loss_type="grpo", beta=0.1 if args.recipe else 0.04, num_generations=args.G,
        per_device_train_batch_size=args.prompts * args.G, max_completion_length=args.completion,
        max_steps=args.steps + 1, use_cpu=True, bf16=False, report_to=[], seed=0, save_strategy="no",
        logging_steps=1, shuffle_dataset=False, reward_funcs=["format", "accuracy"], learning_rate=1e-6,
        gradient_checkpointing=bool(args.recipe), dataloader_num_workers=workers, completions_log=False,
        temperature=1.0, disable_tqdm=True, shared_prefix=shared_prefix,
        reference_shares_frozen=reference_shares_frozen,
        router_aux_loss_coef=0.0 if args.family == "qwen3_omni" else None,
        **({"use_vllm": True, "vllm_mode": "colocate", "vllm_max_model_length": 4096} if use_vllm else {}))
    model = OmniModelConfig(model_name_or_path=str(model_dir), dtype="float32")
    trainer = build_trainer(data, config, model)
    # A random model samples media placeholder/boundary ids; a plain HF forward would then count them as media slots.
    # Suppressed in every mode alike, so the baselines' forwards stay valid and all modes sample the same way.
    # EOS is suppressed too: every completion is max_completion_length tokens long in every mode.
    from hs_rl.tools.tiny_model import tiny_family

    tokenizer = trainer.processing_class.tokenizer
    special = tiny_family(args.family).special_tokens.values()
    suppressed = {tokenizer.convert_tokens_to_ids(t) for t in special} | set(trainer.eos_token_ids)
    suppressed |= {tokenizer.eos_token_id, tokenizer.pad_token_id}
    suppressed = sorted(i for i in suppressed if i is not None)
    if use_vllm:  # TRL builds no generation_config then: the engine gets the rule through its SamplingParams
        _suppress_in_vllm(suppressed)
    else:
        trainer.generation_config.suppress_tokens = suppressed
    return trainer


def _suppress_in_vllm(token_ids: list[int]) -> None:
    """The same sampling rule for the vLLM engine: every completion max_tokens long (min_tokens holds back EOS and the
    stop ids) and no media placeholder or boundary id sampled (logit bias -100). The engine builds its
    SamplingParams from `vllm.SamplingParams` at each call, so wrapping that name is enough."""
    import vllm

    params = vllm.SamplingParams

    def fixed_length(*a, **k):
        k["min_tokens"] = k.get("max_tokens") or 0
        k["logit_bias"] = {int(t): -100.0 for t in token_ids}
        return params(*a, **k)

    vllm.SamplingParams = fixed_length


def _prompt_options(args) -> dict:
    """--recipe: no system turn, so that media is a larger share of the prompt (the sample clips are 1 s long)."""
    return {"system_prompt": ""} if args.recipe else {}


def _compact_lm_head() -> None:
    """Score only the labelled positions in TRL's fused LM head, as TRL does on GPU (on CPU it scores all)."""
    import trl.trainer.utils as trl_utils

    trl_utils._use_triton = lambda device: True


class Protocol:
    """The child's side of the interleaving: wait for the parent's `go`, report a step, report peak memory.

    A thread samples this process's descendants (DataLoader workers) every 0.5 s: each one's peak RSS and its
    peak private memory (USS: Private_Clean + Private_Dirty of /proc/PID/smaps_rollup). A forked worker maps the
    trainer's pages copy-on-write and its RSS counts every one it touches again, so the mode's memory is the
    trainer's peak RSS plus what each worker holds of its own (its USS); both figures are reported. A worker's
    spike shorter than the sampling interval can be missed; adding peaks reached at different times overstates."""

    def __init__(self):
        self.peaks: dict[int, int] = {}
        self.private_peaks: dict[int, int] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._sample, daemon=True).start()

    def wait(self) -> bool:
        return sys.stdin.readline().strip() == "go"

    def report(self, step: dict) -> None:
        self.poll()
        sys.stdout.write(STEP_TAG + json.dumps(step) + "\n")
        sys.stdout.flush()

    def _sample(self) -> None:
        while True:
            self.poll()
            time.sleep(0.5)

    def poll(self) -> None:
        """Peak RSS (VmHWM) and peak private memory of every live descendant process, kept per pid (kB)."""
        for pid in _descendants(os.getpid()):
            try:
                status = {line.split(":")[0]: int(line.split()[1]) for line in
                          Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith(("VmHWM:", "VmRSS:"))}
                hwm = status["VmHWM"]
            except (OSError, KeyError, ValueError):
                continue  # the process has gone
            try:
                private = sum(int(line.split()[1]) for line in Path(f"/proc/{pid}/smaps_rollup").read_text()
                              .splitlines() if line.startswith(("Private_Clean:", "Private_Dirty:")))
            except (OSError, ValueError):  # no smaps_rollup (old kernel, no permission): charge its whole RSS
                private = status.get("VmRSS", hwm)
            with self._lock:
                self.peaks[pid] = max(self.peaks.get(pid, 0), hwm)
                self.private_peaks[pid] = max(self.private_peaks.get(pid, 0), private)

    def memory_mb(self) -> tuple[float, float, float]:
        """(this process's peak RSS, the sum of its descendants' peak private memory, the sum of their peak RSS),
        MB.

        Not RUSAGE_CHILDREN: libraries run `ldconfig -p` at import time (ctypes.util.find_library), and a child
        forked then exec'd keeps the parent's RSS at the fork as its own peak, which charged every mode a
        phantom ~0.6 GB process. A DataLoader worker lives through the epoch and is sampled throughout.
        """
        self.poll()
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with self._lock:
            return own, sum(self.private_peaks.values()) / 1024, sum(self.peaks.values()) / 1024


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                kids = [int(k) for k in Path(f"/proc/{current}/task/{task}/children").read_text().split()]
            except OSError:
                kids = []
            out += kids
            todo += kids
    return out


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


class BodyCounter:
    """Tokens (and forward seconds) that pass through the language-model body and the towers, per kind of pass.

    Forward hooks on the policy's and the reference's `language_model` (the transformer body the packing
    shortens) and on their vision/audio towers. Kinds: `prefill` / `decode` (policy without gradients: the
    rollout), `ref` (reference model), `loss` (policy with gradients; gradient checkpointing replays the body's
    layers in backward, which this hook does not see again, so the loss body runs about twice these tokens).
    """

    def __init__(self, policy, ref):
        self.tokens = defaultdict(int)
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)
        for model, name in ((policy, "policy"), (ref, "ref")):
            if model is None:
                continue
            from hs_rl.omni.families import family_of

            family = family_of(model)
            towers = family.towers(model)
            self._hook(family.language_model(model), name, body=True)
            self._hook(towers["vision"], name + "_video_encoder", body=False)
            self._hook(towers["audio"], name + "_audio_encoder", body=False)

    def _hook(self, module, name, body: bool):
        import torch

        def pre(mod, args, kwargs):
            mod._bench_start = time.perf_counter()

        def post(mod, args, kwargs, output):
            elapsed = time.perf_counter() - mod._bench_start
            if not body:
                self.calls[name] += 1
                self.seconds[name] += elapsed
                return
            embeds = kwargs.get("inputs_embeds")
            shape = embeds.shape[:2] if embeds is not None else (args[0] if args else kwargs["input_ids"]).shape[:2]
            tokens = int(shape[0] * shape[1])
            kind = "ref" if name == "ref" else ("loss" if torch.is_grad_enabled() else
                                                ("decode" if shape[1] == 1 else "prefill"))
            self.tokens[kind] += tokens
            self.seconds[kind] += elapsed
            self.calls[kind] += 1
            if kind == "loss":  # passes whose layers gradient checkpointing will replay in backward
                layer = mod.layers[0]  # transformers' GradientCheckpointingLayer reads its own flag
                self.calls["loss_checkpointed"] += int(bool(getattr(layer, "gradient_checkpointing", False))
                                                       and layer.training)

        module.register_forward_pre_hook(pre, with_kwargs=True)
        module.register_forward_hook(post, with_kwargs=True)

    def snapshot(self) -> dict:
        return {"tokens": dict(self.tokens), "seconds": dict(self.seconds), "calls": dict(self.calls)}

    @staticmethod
    def delta(now: dict, before: dict) -> dict:
        return {part: {k: v - before.get(part, {}).get(k, 0) for k, v in now[part].items()} for part in now}


# ------------------------------------------------------------------------------------------- ours

def run_ours(trainer, args, protocol: Protocol, body: BodyCounter) -> tuple[list[dict], dict]:
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
    logps_fn = trainer._get_per_token_logps_and_entropies
    policy_logps, ref_logps = clock.wrap("logps", logps_fn), clock.wrap("ref", logps_fn)

    def split_logps(model, *a, **k):  # the reference pass and the policy's passes timed apart
        return (ref_logps if model is trainer.ref_model else policy_logps)(model, *a, **k)

    trainer._get_per_token_logps_and_entropies = split_logps
    trainer._calculate_rewards = clock.wrap("rewards", trainer._calculate_rewards)
    trainer.accelerator.backward = clock.wrap("backward", trainer.accelerator.backward)
    trainer.get_batch_samples = clock.wrap("media", trainer.get_batch_samples)
    steps: list[dict] = []
    state = {"last": None, "snap": {}, "tokens": 0, "body": body.snapshot(), "opt": None}

    class StepTimer(TrainerCallback):
        def on_train_begin(self, *a, **k):
            if not trainer.use_vllm:  # vllm: the warm-up samples max_completion_length tokens (it is not measured)
                trainer.generation_config.max_new_tokens = WARMUP_COMPLETION
            protocol.wait()
            state["last"] = time.perf_counter()
            state["body"] = body.snapshot()

        def on_pre_optimizer_step(self, *a, **k):
            state["opt"] = time.perf_counter()

        def on_optimizer_step(self, *a, **k):
            clock.t["optimizer"] += time.perf_counter() - state["opt"]

        def on_step_end(self, *a, **k):
            now = time.perf_counter()
            phases = {p: clock.t[p] - state["snap"].get(p, 0.0) for p in PHASES if p != "other"}
            total = now - state["last"]
            phases["other"] = total - sum(phases.values())
            packed = trainer._metrics["train"].get("shared_prefix/packed", [])
            now_body = body.snapshot()
            step = {"step_time": total, "phases": phases, "tokens": tokens["n"] - state["tokens"],
                    "packed": float(packed[-1]) if packed else 0.0, "body": body.delta(now_body, state["body"])}
            if trainer.use_vllm:  # this step's push (inside generation) and the engine's log-prob drift
                metrics = trainer._metrics["train"]
                step["vllm"] = {key: float(metrics[f"vllm/{key}"][-1]) for key in
                                ("push_seconds", "logprob_diff_mean", "logprob_diff_max") if metrics.get(f"vllm/{key}")}
            steps.append(step)
            if not trainer.use_vllm:
                trainer.generation_config.max_new_tokens = args.completion  # after the warm-up: the measured length
            protocol.report(step)
            protocol.wait()
            state.update(last=time.perf_counter(), snap=dict(clock.t), tokens=tokens["n"], body=body.snapshot())

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
        out["feature_attention_mask"] = torch.cat([pad(r.feature_attention_mask,
                                                       (0, frames - r.input_features.shape[-1]))
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
    out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True, **media)
    return out.log_probs[:, width - 1:]


def run_baseline(trainer, records, args, mode: str, protocol: Protocol,
                 body: BodyCounter) -> tuple[list[dict], dict]:
    import torch

    from hs_rl.data.prompt_media import prepare_prompt
    from hs_rl.omni.families import multimodal_model
    from hs_rl.omni.inputs import thinker_of

    policy = thinker_of(trainer.model)
    ref = trainer.ref_model
    processor = trainer.processing_class
    data_args = trainer._bench_data_args
    gen = trainer.generation_config
    pad_id = processor.tokenizer.pad_token_id
    eos = set(trainer.eos_token_ids)
    beta, temperature, G = trainer.beta, trainer.temperature, args.G
    # the optimizer the Trainer gives ours (transformers' default adamw_torch_fused, no weight decay)
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-6, weight_decay=0.0,
                                  fused=True)
    policy.train()
    checkpointing = bool(args.recipe)  # as TRL: on for the forwards, off while generating

    def set_checkpointing(on: bool) -> None:
        if on:
            policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            policy.gradient_checkpointing_disable()

    set_checkpointing(checkpointing)
    steps, lengths = [], {"prompt": [], "completion": []}
    for step in range(args.steps + 1):
        protocol.wait()
        clock = Clock()
        start = time.perf_counter()
        body_before = body.snapshot()
        chunk = records[step * args.prompts:(step + 1) * args.prompts]
        with clock.phase("media"):  # decode + processor, on the training process, in the step
            prepared = [prepare_prompt(r, processor, data_args) for r in chunk]
        rows = [p[0] for p in prepared]
        lengths["prompt"] += [r.input_ids.numel() for r in rows for _ in range(G)]
        completion = WARMUP_COMPLETION if step == 0 else args.completion
        gen.max_new_tokens = completion
        if checkpointing:
            set_checkpointing(False)
        with clock.phase("generation"), torch.no_grad():
            if mode == "upstream":  # G sequential generate calls per prompt, raw media each time
                sequences = []
                for row in rows:
                    for _ in range(G):
                        multimodal_model(policy).rope_deltas = None
                        out = policy.generate(input_ids=row.input_ids[None],
                                              attention_mask=torch.ones_like(row.input_ids[None]),
                                              generation_config=gen, **_media_kwargs([row], 1))
                        sequences.append(out[0, row.input_ids.numel():].tolist())
                prompt_lists = [row.input_ids.tolist() for row in rows for _ in range(G)]
            else:  # one batched generate over the G duplicated rows of every prompt, media duplicated G times
                prompt_lists = [row.input_ids.tolist() for row in rows for _ in range(G)]
                ids, mask = _left_pad(prompt_lists, pad_id)
                multimodal_model(policy).rope_deltas = None
                out = policy.generate(input_ids=ids, attention_mask=mask, generation_config=gen,
                                      **_media_kwargs(rows, G))
                sequences = out[:, ids.shape[1]:].tolist()
            multimodal_model(policy).rope_deltas = None
        if checkpointing:
            set_checkpointing(True)
        # completions, cut at EOS, right-padded; full sequences = left-padded prompts + completions
        seq_t = torch.full((len(sequences), max(len(s) for s in sequences)), pad_id, dtype=torch.long)
        for i, s in enumerate(sequences):
            seq_t[i, :len(s)] = torch.as_tensor(s)
        comp_ids, comp_mask, comp_rows = _completions(seq_t, 0, eos, completion, pad_id)
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
            with clock.phase("ref"), torch.no_grad():
                ref_lp = (_full_logits_logps(ref, ids[sl], mask[sl], media, temperature, width)
                          if mode == "upstream" else _fused_logps(ref, ids[sl], mask[sl], media, width))
            with clock.phase("logps"):
                multimodal_model(policy).rope_deltas = None
                lp = (_full_logits_logps(policy, ids[sl], mask[sl], media, temperature, width)
                      if mode == "upstream" else _fused_logps(policy, ids[sl], mask[sl], media, width))
                multimodal_model(policy).rope_deltas = None
                m = comp_mask[sl].float()
                kl = torch.exp(ref_lp - lp) - (ref_lp - lp) - 1
                per_token = -(torch.exp(lp - lp.detach()) * adv[sl, None]) + beta * kl
                loss = ((per_token * m).sum(-1) / m.sum(-1).clamp(min=1)).sum() / len(prompt_lists)
            with clock.phase("backward"):
                loss.backward()
            loss_total += float(loss)
        with clock.phase("optimizer"):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        total = time.perf_counter() - start
        phases = {p: clock.t.get(p, 0.0) for p in PHASES}
        phases["other"] += total - sum(phases.values())
        steps.append({"step_time": total, "phases": phases, "tokens": tokens, "loss": loss_total, "packed": 0.0,
                      "body": body.delta(body.snapshot(), body_before)})
        protocol.report(steps[-1])
    return steps, lengths


# ------------------------------------------------------------------------------------------- driver

def child(args) -> None:
    import torch

    torch.manual_seed(0)
    _compact_lm_head()
    workdir = Path(args.workdir)
    model_dir, data_file, records = prepare(workdir, args.preset, args.prompts * (args.steps + 1), args.family,
                                            args.recipe)
    out = workdir / f"out-{args.family}-{args.preset}-{args.mode}"
    ours = args.mode.startswith("ours") or args.mode == VLLM_MODE
    trainer = make_trainer(model_dir, data_file, out, args, workers=1 if ours else 0,
                           shared_prefix=args.mode != "ours_noshare", reference_shares_frozen=ours,
                           use_vllm=args.mode == VLLM_MODE)
    from hs_rl.data.arguments import DataArguments

    trainer._bench_data_args = DataArguments(dataset=str(data_file), video_max_frames=args.frames,
                                             video_max_pixels=25088, video_min_pixels=3136, **_prompt_options(args))
    protocol = Protocol()
    from hs_rl.omni.families import family_of
    from hs_rl.omni.inputs import thinker_of

    body = BodyCounter(thinker_of(trainer.model), None if trainer.ref_model is None else thinker_of(trainer.ref_model))
    if ours:
        steps, lengths = run_ours(trainer, args, protocol, body)
    else:
        steps, lengths = run_baseline(trainer, records, args, args.mode, protocol, body)
        protocol.wait()  # the parent's `stop`, as ours reads it after its last step
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    thinker = thinker_of(trainer.model)
    encoders = sum(count(tower) for tower in family_of(thinker).towers(thinker).values())
    own, workers, workers_rss = protocol.memory_mb()
    result = {
        "mode": args.mode, "preset": args.preset, "params": count(thinker), "encoder_params": encoders,
        "vocab": thinker.config.get_text_config().vocab_size, "steps": steps, "lengths": lengths,
        "shared_prefix": bool(getattr(trainer, "shared_prefix", False)),
        "peak_rss_mb": own, "peak_private_children_mb": workers, "peak_rss_children_mb": workers_rss,
    }
    sys.stdout.write(DONE_TAG + json.dumps(result) + "\n")
    sys.stdout.flush()


def summarize(result: dict) -> dict:
    """Mean ± sd of the measured steps (the first is a warm-up), the phases and tokens of the mean."""
    import statistics

    measured = result["steps"][1:] or result["steps"]
    times = [s["step_time"] for s in measured]
    phases = {p: statistics.fmean(s["phases"][p] for s in measured) for p in PHASES}
    tokens = statistics.fmean(s["tokens"] for s in measured)
    vllm = {key: statistics.fmean(s["vllm"][key] for s in measured if key in s.get("vllm", {}))
            for key in ("push_seconds", "logprob_diff_mean") if any(key in s.get("vllm", {}) for s in measured)}
    if any("logprob_diff_max" in s.get("vllm", {}) for s in measured):
        vllm["logprob_diff_max"] = max(s["vllm"]["logprob_diff_max"] for s in measured if "vllm" in s)
    body = {part: {k: statistics.fmean(s["body"][part].get(k, 0) for s in measured)
                   for k in set().union(*(s["body"][part] for s in measured))}
            for part in ("tokens", "seconds", "calls")}
    return {"body": body, "step_time": statistics.fmean(times),
            "sd": statistics.stdev(times) if len(times) > 1 else 0.0,
            "best": min(times), "phases": phases, "tokens": tokens,
            "packed": min(s.get("packed", 0.0) for s in measured),
            "peak_mb": result["peak_rss_mb"] + result["peak_private_children_mb"], "vllm": vllm,
            "rollout_tps": tokens / phases["generation"] if phases["generation"] else float("nan")}


def _read_until(proc, tag: str) -> dict:
    """The next line of `proc`'s stdout that starts with `tag` (other output is skipped)."""
    while True:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"a benchmark process ended early (exit {proc.wait()}); see its log")
        if line.startswith(tag):
            return json.loads(line[len(tag):])


def run_preset(args, preset: str, modes: tuple[str, ...], workdir: Path) -> dict[str, dict]:
    """Start one process per mode, step them interleaved (rotating order), return each mode's result."""
    procs, logs = {}, {}
    for mode in modes:
        cmd = [sys.executable, __file__, "--mode", mode, "--preset", preset, "--G", str(args.G),
               "--prompts", str(args.prompts), "--completion", str(args.completion), "--frames", str(args.frames),
               "--steps", str(args.steps), "--workdir", str(workdir), "--family", args.family]
        cmd += ["--recipe"] if args.recipe else []
        logs[mode] = open(workdir / f"log-{args.family}-{preset}-{mode}.txt", "w")
        procs[mode] = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logs[mode],
                                       text=True, bufsize=1)
    try:
        for step in range(args.steps + 1):
            k = step % len(modes)
            for mode in modes[k:] + modes[:k]:
                procs[mode].stdin.write("go\n")
                procs[mode].stdin.flush()
                got = _read_until(procs[mode], STEP_TAG)
                print(f"  [{preset}] step {step}{' (warm-up)' if step == 0 else ''} {mode:12s} "
                      f"{got['step_time']:7.2f}s", flush=True)
        results = {}
        for mode in modes:
            procs[mode].stdin.write("stop\n")
            procs[mode].stdin.flush()
            results[mode] = _read_until(procs[mode], DONE_TAG)
            procs[mode].wait()
        return results
    finally:
        for mode, proc in procs.items():
            if proc.poll() is None:
                proc.kill()
            logs[mode].close()


def _print_mode(preset: str, mode: str, result: dict, s: dict) -> None:
    lengths = result["lengths"]
    warm = len(lengths["completion"]) // len(result["steps"])  # the warm-up's rows (shorter completions)
    prompts = lengths["prompt"][warm:] or lengths["prompt"]
    prompt_mean = sum(prompts) / len(prompts)
    comp = lengths["completion"][warm:] or lengths["completion"]
    comp_mean = sum(comp) / len(comp)
    ph = s["phases"]
    print(f"[{preset} {result['params'] / 1e6:.1f}M params] {mode:12s} step {s['step_time']:7.2f} ± {s['sd']:.2f}s "
          f"(best {s['best']:.2f}) | " + " ".join(f"{p} {ph[p]:.2f}" for p in PHASES)
          + f" | rollout {s['rollout_tps']:7.1f} tok/s ({s['tokens']:.0f} tok) | prompt {prompt_mean:.0f} tok,"
          f" completion {comp_mean:.1f} tok [{min(comp)}-{max(comp)}] (x{prompt_mean / max(comp_mean, 1e-9):.1f}) | "
          f"peak {s['peak_mb']:.0f} MB = {result['peak_rss_mb']:.0f} + workers' own "
          f"{result['peak_private_children_mb']:.0f} (their RSS {result['peak_rss_children_mb']:.0f})"
          + (f" | shared_prefix={result['shared_prefix']} packed={s['packed']:.0f}"
             if mode.startswith("ours") or mode == VLLM_MODE else "")
          + (" | vLLM push {push_seconds:.2f}s of the generation, log-prob |engine - trainer| mean "
             "{logprob_diff_mean:.1e} max {logprob_diff_max:.1e}".format(**s["vllm"]) if len(s["vllm"]) == 3 else ""),
          flush=True)
    body = s["body"]
    tok, sec, calls = body["tokens"], body["seconds"], body["calls"]
    print(f"    {mode:12s} LM body tokens/step: " + ", ".join(
        f"{k} {tok.get(k, 0):.0f} ({calls.get(k, 0):.0f} passes, {sec.get(k, 0):.2f}s fwd)"
        for k in ("prefill", "decode", "ref", "loss")) + f" (gradient-checkpointed: "
        f"{calls.get('loss_checkpointed', 0):.0f})" + " | towers: " + ", ".join(
        f"{k} {calls[k]:.0f}x {sec[k]:.2f}s" for k in sorted(calls) if "encoder" in k), flush=True)


def _packing_seen(results: dict, G: int) -> bool:
    """Packed for real: in every step, each loss and reference pass of ours fed the LM body the group's prompt
    once and its G completions (P - 1 + G*C tokens), while trl fed it G*(P + C). Prints the counts."""
    ok = True
    for i, (ours, trl) in enumerate(zip(results["ours"]["steps"], results["trl"]["steps"])):
        prompt, comp = results["ours"]["lengths"]["prompt"][i * G], results["ours"]["lengths"]["completion"][i * G]
        packed_len, plain_len = prompt - 1 + G * comp, G * (prompt + comp)
        got, plain = ours["body"]["tokens"], trl["body"]["tokens"]
        ok &= got.get("loss") == packed_len and got.get("ref") == packed_len and plain.get("loss") == plain_len
        ok &= ours["body"]["calls"].get("loss_checkpointed") == ours["body"]["calls"].get("loss")  # recipe: on
        print(f"  step {i}: LM body tokens per loss / reference pass: ours {got.get('loss', 0)} / "
              f"{got.get('ref', 0)} (packed {prompt} - 1 + {G} x {comp} = {packed_len}), trl {plain.get('loss', 0)} / "
              f"{plain.get('ref', 0)} ({G} x ({prompt} + {comp}) = {plain_len})", flush=True)
    return bool(ok)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="3 measured steps per mode (5 with --recipe); under 5 (8 with --recipe) minutes "
                             "on 2 cores")
    parser.add_argument("--recipe", action="store_true", help="the recipe's settings (see the module docstring)")
    parser.add_argument("--presets", default=None, help="tiny,small (default) or recipe (with --recipe)")
    parser.add_argument("--G", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=None, help="distinct prompts per step (2; 1 with --recipe)")
    parser.add_argument("--completion", type=int, default=None, help="completion tokens (32; 42 with --recipe)")
    parser.add_argument("--frames", type=int, default=None, help="video_max_frames (4; 8 with --recipe)")
    parser.add_argument("--steps", type=int, default=None, help="measured steps (after one warm-up)")
    parser.add_argument("--workdir", default="/tmp/hs_rl_bench")
    parser.add_argument("--family", default="qwen2_5_omni", choices=("qwen2_5_omni", "qwen3_omni"),
                        help="model family of the presets")
    parser.add_argument("--modes", default=None,
                        help=f"comma-separated modes to run, of {','.join(ALL_MODES)} (default: upstream,trl,ours; "
                             "trl,ours_noshare,ours with --recipe); vllm needs vLLM importable")
    parser.add_argument("--mode", choices=ALL_MODES, help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = (5 if args.recipe else 3) if args.quick else 8
    args.prompts = args.prompts or (1 if args.recipe else 2)
    args.completion = args.completion or (42 if args.recipe else 32)
    if args.frames is None:
        args.frames = 8 if args.recipe else 4
    if args.mode:
        child(args)
        return 0
    presets = (args.presets or ("recipe" if args.recipe else "tiny,small")).split(",")
    modes = tuple(args.modes.split(",")) if args.modes else (RECIPE_MODES if args.recipe else MODES)
    unknown = [m for m in modes if m not in ALL_MODES]
    if unknown:
        parser.error(f"--modes: unknown {','.join(unknown)} (known: {','.join(ALL_MODES)})")
    if "ours" not in modes:
        parser.error("--modes: every figure is a ratio to ours; include it")
    # the final lines of a comparison are printed only when all of its modes ran
    full = {"trl", "ours", *(("ours_noshare",) if args.recipe else ("upstream",))} <= set(modes)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    began = time.time()
    load = os.getloadavg()
    kind = " (recipe settings)" if args.recipe else ""
    print(f"GRPO step benchmark ({args.family}){kind}: G={args.G}, {args.prompts} prompt(s)/step, "
          f"completions of exactly {args.completion} tokens, {args.steps} measured step(s) after 1 warm-up, modes "
          f"interleaved, gradient checkpointing {'on' if args.recipe else 'off'}, beta {0.1 if args.recipe else 0.04}, "
          f"CPU only, {os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"load average at start {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}",
          flush=True)
    ratios = defaultdict(list)
    for preset in presets:
        # once here, before the mode processes read it
        prepare(workdir, preset, args.prompts * (args.steps + 1), args.family, args.recipe)
        results = run_preset(args, preset, modes, workdir)
        summaries = {mode: summarize(results[mode]) for mode in modes}
        for mode in modes:
            _print_mode(preset, mode, results[mode], summaries[mode])
        ours, trl = summaries["ours"], summaries.get("trl")
        if VLLM_MODE in summaries:
            vl = summaries[VLLM_MODE]
            ratios["vllm_rollout_tps_vs_ours"].append(vl["rollout_tps"] / ours["rollout_tps"])
            ratios["vllm_step_time_vs_ours"].append(vl["step_time"] / ours["step_time"])
            print(f"[{preset}] vllm vs ours: rollout tokens/s {vl['rollout_tps'] / ours['rollout_tps']:.2f}x, "
                  f"step time {vl['step_time'] / ours['step_time']:.2f}x"
                  + (f"; vllm vs trl: step time {vl['step_time'] / trl['step_time']:.2f}x" if trl else ""), flush=True)
        if not full:
            continue
        if args.recipe:
            first = results["ours"]
            lm = first["params"] - first["encoder_params"]
            print(f"[{preset}] model: vocabulary {first['vocab']}, encoders {first['encoder_params'] / 1e6:.1f}M : "
                  f"LM {lm / 1e6:.1f}M = {first['encoder_params'] / lm:.3f} (Qwen2.5-Omni-7B: 1.32B : 7.6B = 0.174)")
            off = summaries["ours_noshare"]
            print(f"[{preset}] sharing on vs off (ours_noshare): step {off['step_time'] / ours['step_time']:.2f}x, "
                  f"peak memory {ours['peak_mb'] / off['peak_mb']:.2f}x; ours_noshare vs trl: step "
                  f"{trl['step_time'] / off['step_time']:.2f}x", flush=True)
            ratios["recipe_step_speedup_vs_trl"].append(trl["step_time"] / ours["step_time"])
            ratios["recipe_peak_memory_ratio_vs_trl"].append(ours["peak_mb"] / trl["peak_mb"])
            # packed for real: every loss and reference pass of ours fed the body one group's prompt once + G
            # completions (P - 1 + G*C tokens), while the other modes fed it G*(P + C)
            active = results["ours"]["shared_prefix"] and ours["packed"] == 1 and _packing_seen(results, args.G)
            ratios["recipe_shared_prefix_active"].append(1 if active else 0)
            continue
        up = summaries["upstream"]
        r = {"rollout_speedup_vs_upstream": ours["rollout_tps"] / up["rollout_tps"],
             "step_speedup_vs_trl": trl["step_time"] / ours["step_time"],
             "media_fraction_of_step": ours["phases"]["media"] / ours["step_time"]}
        print(f"[{preset}] " + ", ".join(f"{k}={v:.3f}" for k, v in r.items())
              + f"; step speed-up vs upstream {up['step_time'] / ours['step_time']:.2f}x; peak memory ours/trl "
              f"{ours['peak_mb'] / trl['peak_mb']:.2f}", flush=True)
        for k, v in r.items():
            ratios[k].append(v)
    load = os.getloadavg()
    print(f"total wall time {time.time() - began:.0f}s; load average at end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; "
          f"final lines = worst over presets {','.join(presets)}")
    if VLLM_MODE in modes:  # worst over presets: the smallest speed-up, the largest time ratio
        print(f"vllm_rollout_tps_vs_ours: {min(ratios['vllm_rollout_tps_vs_ours']):.3f}")
        print(f"vllm_step_time_vs_ours: {max(ratios['vllm_step_time_vs_ours']):.3f}")
    if not full:
        return 0
    if args.recipe:
        print(f"recipe_step_speedup_vs_trl: {min(ratios['recipe_step_speedup_vs_trl']):.3f}")
        print(f"recipe_peak_memory_ratio_vs_trl: {max(ratios['recipe_peak_memory_ratio_vs_trl']):.3f}")
        print(f"recipe_shared_prefix_active: {min(ratios['recipe_shared_prefix_active'])}")
        return 0
    print(f"rollout_speedup_vs_upstream: {min(ratios['rollout_speedup_vs_upstream']):.3f}")
    print(f"step_speedup_vs_trl: {min(ratios['step_speedup_vs_trl']):.3f}")
    print(f"media_fraction_of_step: {max(ratios['media_fraction_of_step']):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
