"""`OmniGRPOTrainer`: TRL's GRPOTrainer taught video and audio, overriding as few hooks as possible.

TRL 1.16 knows images only: its log-prob forward rebuilds multimodal inputs from images, so video and
audio features would silently vanish from the loss. Here every row of a batch carries its own
`PromptMedia` (tokens + its own video/audio tensors + its own `use_audio_in_video`), and every forward —
generation, old/reference log-probs, the loss — builds its inputs from those rows with the same two
functions (`lm_inputs`, `rope_positions`), so each sample keeps its modality inside a mixed batch. What differs
between Qwen2.5-Omni and Qwen3-Omni (DeepStack, MoE aux loss, classes) sits in hs_rl.omni.families.

Methods overridden (of TRL's GRPOTrainer and transformers' Trainer), and why; each one, every private
method called and the patch are listed with the signatures they are written against in hs_rl.grpo.trl_contract,
which tests/grpo/test_trl_contract.py checks against the installed TRL in a second:
- `__init__`: TRL builds the reference model as the checkpoint family's thinker (not the class config.json
  names), from `ref_model_name_or_path` when set, sharing the policy's frozen tensors, through a patch of
  `trl.trainer.grpo_trainer.create_model_from_path` held only while TRL's `__init__` runs; checkpoint rotation
  moves after the completion marker. With `use_vllm`, TRL's own colocated engine (images only; a weight push that
  never reaches a vLLM-CPU engine) is replaced by a placeholder while its `__init__` runs (`_no_trl_vllm_engine`)
  and hs-rl's engine starts after it (hs_rl.grpo.vllm_rollouts).
- `_generate_and_score_completions`: take the rows' media for this batch; hand it on inside the buffered
  batch (TRL shuffles and splits lists with the tensors) and log completions to JSONL; with `use_vllm`, log the
  drift between the engine's and the trainer's log-probs of the sampled tokens (`vllm/logprob_diff_mean|max`).
- `_compute_loss`: select the media of the micro-batch TRL is about to score.
- `_tokenize_prompts`: prompts were tokenized, with media placeholders expanded, in DataLoader workers.
- `_generate_single_turn`: prefill each distinct prompt once, then decode all rows of all groups together; with
  `use_vllm`, push the policy's weights if the engine lacks this step's, and sample each distinct prompt's rows
  there from the row's own media (TRL's importance-sampling correction then uses the engine's log-probs).
- `_get_per_token_logps_and_entropies`: the forward pass with each row's media, chunked like TRL's; with
  `shared_prefix` (default) a micro-batch of whole groups is packed into one sequence, each prompt once with
  its completions after it under a per-group attention mask (hs_rl.grpo.prefix_sharing).
- `_save_checkpoint`, `_load_from_checkpoint`, `_load_optimizer_and_scheduler`, `_load_best_model`,
  `_get_train_sampler`, `_run_epoch`: completion markers (and a full disk said in one line), a resume (and
  best-model load) that really loads the weights, an extended run's schedule continued at a real learning rate,
  per-epoch data order under any sampler wrapping, no extra step on a re-run (see hs_rl.grpo.checkpoints for
  why each is needed).
  `_get_train_sampler` also wraps TRL's sampler in `FirstUseSampler` (hs_rl.data.dataset): TRL's re-fetches of
  a buffered generation batch get media-free rows, so each clip is decoded once per use (`num_examples` counts
  records, not those twin rows).
- `_get_eval_sampler`, `evaluate`, `log`: evaluation sets (probes) sampled over their media rows only, and
  TRL's eval metrics named after the set they come from (`eval_NAME_...`).
- `_get_eval_sampler`, `evaluate`, `log`: held-out probes (`probe_datasets`, a dict `eval_dataset`) are sampled
  from their media rows only, and TRL's eval metrics are named after the probe (`eval_NAME_rewards/...`; TRL would
  log every set under the same `eval_rewards/...`).
TRL's GRPO module itself is imported with vLLM hidden from its import-time checks
(`trl_contract.import_trl_grpo_without_vllm`): none of TRL's vLLM code runs here, and importing vLLM cost every
process 4 s.
A `ProgressRecorder` callback (hs_rl.grpo.progress_recorder) keeps OUTPUT_DIR/progress.json current for the
console and `hs-rl status`.

Every process runs the same modules the same number of times. Under ZeRO-3/FSDP each module call is a
collective, and under DDP/ZeRO-1/2 the gradient buckets must hold the same parameters everywhere, so a decision
that changes which modules run, or how often, is either rank-independent or taken for all processes together:
- which towers run (`_towers_rule`): both on every forward, a dummy where no row needs one, with several
  processes under ZeRO-3/FSDP or with a trained tower (`run_all_towers`; off only for frozen replicated towers);
- packing a micro-batch (`_packs`): collective, packed only if every process's micro-batch is whole groups;
- generation (`_generate_single_turn`): one prefill per call, decode steps synced across processes under
  ZeRO-3/FSDP (hs_rl.omni.generation);
- the reference model's path (cached encoder outputs or its own towers), shared prefix on or off, vLLM or not,
  loss and aux-loss settings: from the configuration and the model only, the same on every process;
- re-fetch rows: `FirstUseSampler` marks a global position of the sampler, so all processes get them together;
  the check below that none reaches generation is collective, so every process stops with the same error.
Everything else is TRL's and transformers', unchanged: advantages, loss types, KL, clipping, PEFT, the optimizer
and schedule, metric logging, and the checkpoint save and load themselves (the overrides above wrap them).
"""
from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather_object
from trl.models import unwrap_model_for_generation

from hs_rl.data.dataset import FirstUseSampler, prompt_count
from hs_rl.data.prompt_media import PromptMedia
from hs_rl.errors import UserError
from hs_rl.grpo.checkpoints import (
    continue_schedule,
    disk_full_reported,
    load_saved_weights,
    loads_plain_weights,
    mark_complete,
)
from hs_rl.grpo.prefix_sharing import completion_masks_are_prefixes, shared_prefix_logps, splits_a_group, unsafe_reason
from hs_rl.grpo.progress_recorder import ProgressRecorder
from hs_rl.grpo.reference import share_frozen_parameters, weights_fingerprint
from hs_rl.grpo.sampler import epoch_seeded
from hs_rl.grpo.trl_contract import import_trl_grpo_without_vllm
from hs_rl.omni.families import family_of, family_of_dir, language_backbone
from hs_rl.omni.generation import generate_rows
from hs_rl.omni.inputs import lm_inputs, rope_positions, thinker_of
from hs_rl.rewards.common import completion_text

logger = logging.getLogger(__name__)

# TRL's GRPO module, imported with vLLM hidden from its import-time checks (none of TRL's vLLM code runs here)
_trl_grpo = import_trl_grpo_without_vllm()
GRPOTrainer = _trl_grpo.GRPOTrainer


@contextlib.contextmanager
def _thinker_reference_models(reference: str | None = None, on_created=None, policy_from_path: bool = False):
    """Make TRL build its reference model as a thinker of the checkpoint's family (it would otherwise load the
    class named in config.json, the full Omni model for a full checkpoint folder), from `reference` when given
    (TRL's own choice is the policy's starting checkpoint); `on_created(model)` sees it before TRL prepares it.

    With `policy_from_path` (the trainer was handed a path, not a model) TRL's first call loads the policy: that
    one is loaded as the family's thinker from its own path, never redirected to `reference` nor shared."""
    original = _trl_grpo.create_model_from_path
    policy_pending = [policy_from_path]

    def create_thinker(model_id: str, architecture=None, **kwargs):
        if policy_pending[0]:
            policy_pending[0] = False
            return original(model_id, architecture=family_of_dir(model_id).thinker_class, **kwargs)
        model_id = reference or model_id
        if on_created is not None:  # loaded whole on the CPU; TRL's prepare moves it after `on_created` (a
            kwargs["device_map"] = None  # "auto" map would put a full copy on the GPU first, or offload it)
        model = original(model_id, architecture=family_of_dir(model_id).thinker_class, **kwargs)
        if on_created is not None:
            on_created(model)
        return model

    _trl_grpo.create_model_from_path = create_thinker
    try:
        yield
    finally:
        _trl_grpo.create_model_from_path = original


class _NoTRLEngine:
    """What TRL's __init__ builds instead of its `VLLMGeneration` (see `_no_trl_vllm_engine`)."""

    def __init__(self, **kwargs):
        pass

    def __getattr__(self, name: str):
        raise AttributeError(f"TRL's vLLM generation ({name}) is not used: OmniGRPOTrainer generates through its "
                             "own engine (hs_rl.grpo.vllm_rollouts)")


@contextlib.contextmanager
def _no_trl_vllm_engine():
    """With use_vllm, TRL's __init__ would start its own colocated engine, which hands vLLM images only and pushes
    weights with `load_weights` (on vLLM-CPU that never reaches what it samples): it builds a placeholder instead,
    and OmniGRPOTrainer starts hs-rl's engine after it. TRL sets everything else use_vllm needs (`use_vllm`, the
    importance-sampling settings) itself."""
    original = _trl_grpo.VLLMGeneration
    _trl_grpo.VLLMGeneration = _NoTRLEngine
    try:
        yield
    finally:
        _trl_grpo.VLLMGeneration = original


def _batch_rows(media: list[PromptMedia], device: torch.device) -> list[PromptMedia]:
    """This batch's rows on `device`: one fresh copy of each distinct prompt (a group's rows still share it), so the
    encoder outputs and device tensors the step adds to a row live as long as the batch, not as long as the
    DataLoader side keeps the prompt (`prompt_cache_size`). The copy is shallow: tensors already on `device` are
    shared, not copied."""
    import dataclasses

    copies: dict[int, PromptMedia] = {}
    for row in media:
        if id(row) not in copies:
            copies[id(row)] = dataclasses.replace(row, cache={}).to(device)
    return [copies[id(row)] for row in media]


def _keep_used_weight_conversions(model) -> None:
    """Under ZeRO-3, transformers 5.23 loads through `integrations.deepspeed`, which records every candidate
    key mapping (legacy ones included) on the model instead of only those that matched, as the normal path does;
    `save_pretrained` then reverts them all and writes names like `thinker.model.thinker.audio_tower.…` that no
    `from_pretrained` can load. Keep only the mappings that were used, as the non-DeepSpeed loader does."""
    conversions = getattr(model, "_weight_conversions", None)
    if conversions:
        model._weight_conversions = [c for c in conversions if c.was_used()]


class OmniGRPOTrainer(GRPOTrainer):
    """GRPO on an Omni thinker (Qwen2.5-Omni or Qwen3-Omni) with video, audio and video+audio prompts, mixed freely
    in a batch."""

    def __init__(self, *args, encoders_frozen: bool = True, run_all_towers: bool | None = None,
                 completions_log: str | Path | None = None, **kwargs):
        reference = getattr(kwargs.get("args"), "ref_model_name_or_path", None)
        if reference and kwargs.get("peft_config") is not None:
            raise ValueError(f"ref_model_name_or_path={reference!r} with LoRA: the LoRA run's reference is its "
                             "model with the adapter switched off; drop one of the two")
        if reference and kwargs.get("model") is not None and not isinstance(kwargs["model"], str):
            mine, theirs = family_of(thinker_of(kwargs["model"])).name, family_of_dir(reference).name
            if mine != theirs:
                raise ValueError(f"ref_model_name_or_path={reference!r} is a {theirs} model; the policy is {mine}")
        training_args = kwargs.get("args")
        if getattr(training_args, "use_vllm", False):
            from hs_rl.grpo.vllm_rollouts import mode_problem

            if (problem := mode_problem(training_args)) is not None:
                raise UserError(problem)
        self._shared_frozen: list[str] = []  # the reference's tensors that are the policy's (_share_frozen_with)
        self._shared_fingerprint: torch.Tensor | None = None
        with _thinker_reference_models(reference, on_created=None if reference else self._share_frozen_with,
                                       policy_from_path=isinstance(kwargs.get("model", args[0] if args else None),
                                                                   str)), _no_trl_vllm_engine():
            super().__init__(*args, **kwargs)
        self.vllm_engine = None  # use_vllm: this process's hs_rl.omni.vllm_engine.VLLMEngine, built below
        self._vllm_pushed_step: int | None = None  # the global step whose weights the engine holds (None: none yet)
        self._vllm_parts: set[str] | None = None  # what each push after the first sends (the trained parts)
        self._vllm_names: dict[str, str] = {}  # in-memory -> vLLM name prefixes (vllm_engine.thinker_parts)
        if reference and self.ref_model is not None:
            sizes = [thinker_of(self.accelerator.unwrap_model(m)).get_input_embeddings().num_embeddings
                     for m in (self.model, self.ref_model)]
            if sizes[0] != sizes[1]:
                raise ValueError(f"ref_model_name_or_path={reference!r} has a vocabulary of {sizes[1]} tokens; the "
                                 f"policy's has {sizes[0]}: the KL term compares the two token by token")
        self._rows: list[PromptMedia] | None = None
        self.encoders_frozen = encoders_frozen
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        # ZeRO-3 / FSDP: each module's forward gathers its weights with a collective every process must join
        self._sharded = self.accelerator.num_processes > 1 and (
            (plugin is not None and plugin.zero_stage == 3) or bool(self.is_fsdp_enabled))
        self.run_all_towers = self._towers_rule(run_all_towers)
        self.completions_log = Path(completions_log) if completions_log else None
        _keep_used_weight_conversions(thinker_of(self.model))
        self.shared_prefix = bool(getattr(self.args, "shared_prefix", True))
        if self.shared_prefix and (reason := unsafe_reason(self)) is not None:
            logger.warning("shared_prefix is off for this run (plain per-row forward instead): %s", reason)
            self.shared_prefix = False
        self._split_group_logged = False
        self._overruled_logged = False
        self._packed_chunks: list[bool] = []  # each forward chunk since the last loss: packed? (shared_prefix/packed)
        self.reward_error_counts: dict[str, int] = {}
        # rotation happens after the completion marker (hs_rl.grpo.checkpoints.mark_complete), not in the Trainer
        self.checkpoint_limit, self.args.save_total_limit = self.args.save_total_limit, None
        # OUTPUT_DIR/progress.json for the pipeline's console and `hs-rl status` (rank 0 writes it)
        self.add_callback(ProgressRecorder(self.args.output_dir))
        if self.use_vllm:
            from hs_rl.grpo import vllm_rollouts

            self.vllm_engine = vllm_rollouts.together(self, "start-up", lambda: vllm_rollouts.build_engine(self))

    def _towers_rule(self, asked: bool | None) -> bool:
        """Whether every forward runs both towers (a dummy input where no row needs one): a rank-independent rule.

        Needed with several processes when the weights are sharded (ZeRO-3, FSDP: a tower's forward is a gather all
        ranks join) or a tower is trained (ZeRO-1/2's and DDP's gradient buckets must hold the same parameters on
        every rank: a tower one rank skipped leaves its gradients out, gloo's "Received data size doesn't match
        expected size" under ZeRO-2; DDP would need `find_unused_parameters`). `asked` (the `run_all_towers`
        option) may turn it on anywhere, off only where it is not needed.
        """
        thinker = thinker_of(self.accelerator.unwrap_model(self.model))
        trained = [name for name, tower in family_of(thinker).towers(thinker).items()
                   if any(p.requires_grad for p in tower.parameters())]
        why = ("ZeRO-3/FSDP gather each tower's weights with a collective" if self._sharded
               else f"the trained {' and '.join(trained)} tower's gradients are reduced across processes" if trained
               and self.accelerator.num_processes > 1 else None)
        if why is None:
            return bool(asked)
        if asked is False:
            raise UserError(f"run_all_towers: false with {self.accelerator.num_processes} processes: {why}, so a "
                            "process whose batch lacks a modality must still run its tower, or the processes "
                            "fall out of step; drop run_all_towers: false")
        logger.info("run_all_towers: both towers run in every forward on every process (%s)", why)
        return True

    def _same_on_every_rank(self, flag: bool) -> bool:
        """`flag` AND-ed over all processes: a decision that changes which modules run, or how often, is the same
        on every rank (see the module docstring)."""
        if self.accelerator.num_processes == 1:
            return flag
        flags = self.accelerator.gather(torch.tensor([int(flag)], device=self.accelerator.device))
        return bool(flags.min().item())

    def _share_frozen_with(self, reference_model: torch.nn.Module) -> None:
        """TRL just built the reference from the policy's starting checkpoint: give it the policy's frozen tensors
        (hs_rl.grpo.reference.share_frozen_parameters) unless shards or a synced reference make them differ."""
        from transformers.integrations import is_deepspeed_zero3_enabled

        why_not = ("reference_shares_frozen is off" if not getattr(self.args, "reference_shares_frozen", True)
                   else "ZeRO-3 partitions each model's parameters on its own" if is_deepspeed_zero3_enabled()
                   else "FSDP shards each model on its own" if self.is_fsdp_enabled
                   else "sync_ref_model moves the reference's weights" if self.args.sync_ref_model else None)
        if why_not is not None:
            logger.info("reference model: a full copy (%s)", why_not)
            return
        self._shared_frozen = share_frozen_parameters(self.model, reference_model)
        values = sum(self.model.get_parameter(name).numel() for name in self._shared_frozen)
        self._shared_fingerprint = weights_fingerprint(self.model, self._shared_frozen, self._cast_dtype())
        logger.info("reference model: %d frozen parameter tensors (%.1fM values) shared with the policy, not copied",
                    len(self._shared_frozen), values / 1e6)

    def _cast_dtype(self) -> torch.dtype:
        return torch.float16 if self.args.fp16 else torch.bfloat16

    def _check_shared_reference(self) -> None:
        """Before the first step (after any resume load): the shared frozen weights are still the starting model's.

        A checkpoint trained with other `freeze_*` settings (or a policy whose frozen weights were changed after
        start-up) would otherwise hand its tower or expert weights to the reference, which would silently stop
        being the stage's starting model."""
        if not self._shared_frozen:
            return
        policy = self.accelerator.unwrap_model(self.model)
        if not torch.equal(weights_fingerprint(policy, self._shared_frozen, self._cast_dtype()),
                           self._shared_fingerprint):
            raise RuntimeError(
                "the policy's frozen weights are no longer those of the model the stage started from (was the "
                "checkpoint being resumed trained with other freeze_vision_encoder / freeze_audio_encoder / "
                "freeze_experts settings?). The reference model shares them with the policy and would no longer "
                "be the starting model: resume with the settings the checkpoint was trained with, or set "
                "reference_shares_frozen: false")
        reference = thinker_of(self.accelerator.unwrap_model(self.ref_model))
        still = sum(reference.get_parameter(n) is policy.get_parameter(n) for n in self._shared_frozen)
        logger.info("reference model: %d of %d shared frozen tensors still shared at the start of training, their "
                    "values unchanged", still, len(self._shared_frozen))

    # ---- checkpoints (hs_rl.grpo.checkpoints) -----------------------------------------------------------------
    def _save_checkpoint(self, model, trial):
        with disk_full_reported(self, trial):  # a full disk: one line (folder, free space, size), not torch's
            super()._save_checkpoint(model, trial)
        mark_complete(self, trial)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:  # an extended run trains at its schedule's rate, not the old run's last one
            continue_schedule(self.lr_scheduler)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        if loads_plain_weights(self, model, resume_from_checkpoint):  # HF's raw load would match no name
            load_saved_weights(model if model is not None else self.model, Path(resume_from_checkpoint))
        else:
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _get_train_sampler(self, dataset=None):
        prompts = prompt_count(self.train_dataset if dataset is None else dataset)
        if prompts is None:
            self._epoch_sampler = epoch_seeded(super()._get_train_sampler(dataset))
        else:  # hs_rl's training dataset: re-fetches of a buffered generation batch carry no media
            self._epoch_sampler = FirstUseSampler(epoch_seeded(super()._get_train_sampler(range(prompts))), prompts)
        return self._epoch_sampler

    def _get_eval_sampler(self, eval_dataset):
        """TRL's eval sampler over the records' media rows only (a probe is built like the training set, whose
        second half is media-free re-fetch rows that no generation may see)."""
        prompts = prompt_count(eval_dataset)
        return super()._get_eval_sampler(eval_dataset if prompts is None else range(prompts))

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        """Remember which evaluation set runs: with a dict `eval_dataset` (the probes) the Trainer calls this once
        per set with prefix `eval_NAME`, and `log` names TRL's metrics after it."""
        outer, self._eval_prefix = getattr(self, "_eval_prefix", "eval"), metric_key_prefix
        try:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        finally:
            self._eval_prefix = outer

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # TRL prefixes its own eval metrics with `eval_` alone, so every set of a dict eval_dataset would log the same
        # `eval_rewards/...` keys: name them after the set, as the Trainer names its loss (eval_NAME_loss)
        prefix = getattr(self, "_eval_prefix", "eval")
        if not self.model.training and prefix != "eval":
            name = prefix.removeprefix("eval_")
            metrics = self._metrics["eval"]
            self._metrics["eval"] = type(metrics)(metrics.default_factory,
                                                  {f"{name}_{key}": value for key, value in metrics.items()})
        super().log(logs, start_time)

    def num_examples(self, dataloader) -> int:
        prompts = prompt_count(dataloader.dataset)
        return super().num_examples(dataloader) if prompts is None else prompts

    def _run_epoch(self, *args, **kwargs):
        """Seed the sampler with the epoch itself, and train nothing once the run's last step is done.

        After a resume, accelerate wraps the sampler as SkipBatchSampler → BatchSamplerShard → BatchSampler →
        RepeatSampler and neither its nor the Trainer's `set_epoch` reaches that deep: with several processes
        a run resumed in epoch ≥ 1 would replay epoch 0's order. A run resumed from its last checkpoint (a
        re-run that only has the export left) would otherwise train one step more than asked.
        """
        epoch = kwargs["epoch"] if "epoch" in kwargs else args[1]
        if self.state.global_step >= self.state.max_steps:
            logger.info("step %d of %d: nothing left to train", self.state.global_step, self.state.max_steps)
            return None
        if self._shared_fingerprint is not None:  # once, after any resume load
            self._check_shared_reference()
            self._shared_fingerprint = None
        sampler = getattr(self, "_epoch_sampler", None)
        if sampler is not None and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        return super()._run_epoch(*args, **kwargs)

    def _load_best_model(self):
        best = self.state.best_model_checkpoint
        if best is not None and loads_plain_weights(self, None, best):  # HF's raw load would match no name
            logger.info("loading the best model, %s (%s = %s)", best, self.args.metric_for_best_model,
                        self.state.best_metric)
            load_saved_weights(self.model, Path(best))
        else:
            super()._load_best_model()

    # ---- batch bookkeeping -------------------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        device = self.accelerator.device
        if not self._same_on_every_rank(not any(x.get("repeat") for x in inputs)):  # every process stops
            raise RuntimeError("a generation batch of media-free re-fetch rows: TRL's generation cycle and the "
                               "FirstUseSampler are out of step (OmniGRPOTrainer bookkeeping bug)")
        self._rows = _batch_rows([x["media"] for x in inputs], device)
        mode = "train" if self.model.training else "eval"
        problems = torch.tensor(sum(bool(x.get("media_problem")) for x in inputs), device=device)
        self._metrics[mode]["media/replaced_samples"].append(self.accelerator.gather(problems).sum().item())
        output = super()._generate_and_score_completions(inputs)
        # reward_errors: zero — how many scored 0 so far, summed over ranks. A collective: every rank gathers the
        # same fixed list (TRL's reward names), never the names its own counter happens to hold
        names = list(self.reward_func_names)
        counts = torch.tensor([float(self.reward_error_counts.get(n, 0)) for n in names], device=device)
        totals = self.accelerator.gather(counts).view(-1, len(names)).sum(0).tolist() if names else []
        for name, total in zip(names, totals):
            if total:
                self._metrics[mode][f"rewards/{name}/errors"].append(total)
        if self.use_vllm:
            self._log_vllm_drift(output, mode)
        output["media"] = self._rows
        self._log_completions_jsonl(inputs, mode)
        return output

    def _log_vllm_drift(self, output: dict[str, Any], mode: str) -> None:
        """`vllm/logprob_diff_mean` and `_max`: how far the engine's log-probs of its samples are from the trainer's
        (TRL's old log-probs; with vllm_importance_sampling_correction off they are computed here for the metric).
        Collective: every process gathers the same two numbers."""
        from hs_rl.grpo import vllm_rollouts

        if output.get("old_per_token_logps") is None:
            ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
            mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
            with torch.no_grad():
                old, _, _ = self._get_per_token_logps_and_entropies(
                    self.model, ids, mask, output["completion_ids"].size(1),
                    batch_size=self.args.per_device_train_batch_size if mode == "train"
                    else self.args.per_device_eval_batch_size)
            output = {**output, "old_per_token_logps": old}
        mean, top = vllm_rollouts.logprob_drift(output)
        self._metrics[mode]["vllm/logprob_diff_mean"].append(self.accelerator.gather(mean[None]).mean().item())
        self._metrics[mode]["vllm/logprob_diff_max"].append(self.accelerator.gather(top[None]).max().item())

    def _compute_loss(self, model, inputs):
        self._rows = inputs["media"]
        loss = super()._compute_loss(model, inputs)
        if self._packed_chunks:  # the fraction of the forward chunks since the last loss (this loss, and the old and
            # reference log-probs of a new generation batch) that ran packed; 1.0: all of them
            mode = "train" if self.model.training else "eval"
            self._metrics[mode]["shared_prefix/packed"].append(sum(self._packed_chunks) / len(self._packed_chunks))
            self._packed_chunks = []
        return loss

    def _tokenize_prompts(self, prompts: list):
        return [row.input_ids.tolist() for row in self._rows], None, {}

    # ---- generation --------------------------------------------------------------------------------------
    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        if self.use_transformers_continuous_batching:
            raise NotImplementedError("OmniGRPOTrainer generates with transformers' generate or vLLM, not with "
                                      "transformers' continuous batching")
        if self.use_vllm:
            return self._generate_with_vllm()
        with (
            unwrap_model_for_generation(
                self.model_wrapped, self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                generation_kwargs=self.generation_kwargs,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as unwrapped,
            torch.no_grad(),
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
        ):
            completion_ids = generate_rows(thinker_of(unwrapped), self._rows, self.generation_config,
                                           self.eos_token_ids, encoders_frozen=self.encoders_frozen,
                                           run_all_towers=self.run_all_towers, synced_gpus=self._sharded)
        return completion_ids, None

    def _push_to_vllm(self) -> None:
        """Give the engine the policy's current weights if it does not hold them yet: before the first generation
        (after any resume load, so a resumed run samples from the checkpoint's weights) and after every optimizer
        step. The first push sends the whole thinker, later ones only its trained parts (frozen towers stay)."""
        from hs_rl.grpo import vllm_rollouts
        from hs_rl.omni import vllm_engine

        step = self.state.global_step
        if self._vllm_pushed_step == step:
            return
        first = self._vllm_pushed_step is None
        if first:  # the layout's names and the trained parts do not change during the run
            thinker = thinker_of(self.accelerator.unwrap_model(self.model))
            self._vllm_names = vllm_engine.thinker_parts(thinker)
            self._vllm_parts = vllm_rollouts.trained_parts(thinker, self._vllm_names)
        parts = None if first else self._vllm_parts
        seconds = vllm_rollouts.together(
            self, "the weight push",
            lambda: self.vllm_engine.push_named(vllm_rollouts.policy_weights(self, parts), self._vllm_names))
        self._vllm_pushed_step = step
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["vllm/push_seconds"].append(seconds)

    def _generate_with_vllm(self) -> tuple[list[list[int]], list[list[float]]]:
        """Each row's completion and its sampled tokens' log-probs from this process's engine: one request per
        distinct prompt with as many samples as the prompt has rows here."""
        from hs_rl.grpo import vllm_rollouts
        from hs_rl.omni.inputs import prompt_groups

        self._push_to_vllm()
        rows = self._rows
        first, group_of_row = prompt_groups(rows)
        sizes = [group_of_row.count(g) for g in range(len(first))]
        # a fresh stream per step, process and mode from the run's seed (on GPU; vLLM-CPU uses the engine's stream)
        seed = (self.args.seed * 1_000_003 + self.accelerator.process_index * 100_003
                + self.state.global_step * 211 + (0 if self.model.training else 101))
        samples: dict[int, list] = {}

        def generate() -> None:
            for size in sorted(set(sizes)):
                groups = [g for g in range(len(first)) if sizes[g] == size]
                results = self.vllm_engine.generate(
                    [rows[first[g]] for g in groups], n=size, temperature=self.temperature,
                    max_tokens=self.max_completion_length, stop_token_ids=list(self.eos_token_ids),
                    top_p=self.top_p if self.top_p is not None else 1.0, top_k=self.top_k or -1,
                    seed=seed + 7919 * size)
                samples.update(zip(groups, results))

        vllm_rollouts.together(self, "generation", generate)
        taken = [0] * len(first)
        completions, logprobs = [], []
        for g in group_of_row:
            tokens, logps = samples[g][taken[g]]
            taken[g] += 1
            completions.append(tokens)
            logprobs.append(logps)
        return completions, logprobs

    # ---- forward passes ----------------------------------------------------------------------------------
    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **image_kwargs):
        """Per-token log-probs of the completion columns, each row's media in its own placeholders."""
        rows = self._rows
        if rows is None or len(rows) != input_ids.size(0):
            raise RuntimeError("media rows are out of step with the batch (OmniGRPOTrainer bookkeeping bug)")
        thinker = thinker_of(self.accelerator.unwrap_model(model))
        # frozen towers: a prompt's encoder outputs are computed once and cached on its row. TRL's reference is the
        # stage's starting checkpoint, whose frozen towers are the policy's, so it may read that cache; another
        # reference model (ref_model_name_or_path) may hold other towers (an earlier stage trained one): its own run
        use_cache = self.encoders_frozen and (model is not self.ref_model
                                                 or not getattr(self.args, "ref_model_name_or_path", None))
        prompt_width = input_ids.size(1) - logits_to_keep
        batch_size = batch_size or input_ids.size(0)
        all_logps, all_entropies, all_aux = [], [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = min(start + batch_size, input_ids.size(0))
            ids, mask, chunk = input_ids[start:end], attention_mask[start:end], rows[start:end]
            packed = self.shared_prefix and self._packs(ids, mask, chunk, prompt_width)
            self._packed_chunks.append(packed)
            if packed:
                logps, entropies = shared_prefix_logps(
                    model, thinker, ids, mask, chunk, logits_to_keep, encoders_frozen=use_cache,
                    run_all_towers=self.run_all_towers, compute_entropy=compute_entropy,
                    autocast=self.accelerator.autocast())
                all_logps.append(logps)
                if compute_entropy:
                    all_entropies.append(entropies)
                continue
            inputs = lm_inputs(thinker, ids, chunk, use_cache=use_cache, prompt_width=prompt_width,
                               run_all_towers=self.run_all_towers)
            positions = rope_positions(thinker, mask, chunk, prompt_width)
            labels = ids.masked_fill(mask == 0, -100)
            labels[:, :-logits_to_keep] = -100
            if compute_aux_loss:  # MoE: router logits → TRL's fused head adds the load-balancing loss
                inputs["output_router_logits"] = True
            with self.accelerator.autocast(), language_backbone(thinker):  # TRL's fused head: a head-less backbone
                outputs = model(**inputs, attention_mask=mask, position_ids=positions, labels=labels,
                                fused_lm_head=True)
            all_logps.append(outputs.log_probs[:, -logits_to_keep:])
            if compute_entropy:
                all_entropies.append(outputs.entropy[:, -logits_to_keep:])
            if compute_aux_loss:
                all_aux.append(outputs.aux_loss)
        logps = torch.cat(all_logps, dim=0)
        entropies = torch.cat(all_entropies, dim=0) if compute_entropy else None
        aux_loss = torch.stack(all_aux).mean() if compute_aux_loss else None
        return logps, entropies, aux_loss

    def _packs(self, ids: torch.Tensor, mask: torch.Tensor, rows: list[PromptMedia], prompt_width: int) -> bool:
        """Whether this micro-batch goes through the packed forward: only when every process's micro-batch holds
        whole groups (one log line otherwise).

        Collective: the packed path calls the embedding twice (prompts, then completions), the plain path once,
        and under ZeRO-3 each call is a gather every process must join. TRL shuffles each process's generation
        batch with that process's own RNG, so with `steps_per_generation > 1` one process may hold whole groups
        while another does not: then all of them run plain.
        """
        group_size = self.num_generations if self.model.training else self.num_generations_eval
        whole = not splits_a_group(rows, group_size) and completion_masks_are_prefixes(mask, prompt_width)
        everywhere = self._same_on_every_rank(whole)
        if not whole and not self._split_group_logged:
            logger.warning(
                "shared_prefix: a micro-batch holds part of a group (%d rows, %d prompts, %d generations each); "
                "such micro-batches use the plain per-row forward. Put whole groups in a micro-batch: "
                "per_device_train_batch_size a multiple of num_generations and steps_per_generation 1.",
                len(rows), len({id(r) for r in rows}), group_size)
            self._split_group_logged = True
        elif whole and not everywhere and not self._overruled_logged:
            logger.warning("shared_prefix: another process's micro-batch holds part of a group, so this one runs the "
                           "plain per-row forward too (every process must call the same modules the same number "
                           "of times)")
            self._overruled_logged = True
        return everywhere

    # ---- logs --------------------------------------------------------------------------------------------
    def _log_completions_jsonl(self, inputs: list[dict[str, Any]], mode: str) -> None:
        """Append this generation batch's completions with their rewards and advantages (main process)."""
        if self.completions_log is None:
            return
        ids = gather_object([x["id"] for x in inputs])
        if not self.accelerator.is_main_process:
            return
        count = len(ids)
        # a generation batch trains the steps after global_step (as log_history counts: from 1); eval: after it
        step = self.state.global_step + (mode == "train")
        completions = list(self._logs["completion"])[-count:]
        advantages = list(self._logs["advantages"])[-count:]
        rewards = {name: list(values)[-count:] for name, values in self._logs["rewards"].items()}
        self.completions_log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.completions_log, "a", encoding="utf-8") as handle:
            for i, sample_id in enumerate(ids):
                completion = completions[i] if i < len(completions) else None
                text = None if completion is None else completion_text(completion)
                handle.write(json.dumps({
                    "step": step, "mode": mode, "id": sample_id, "completion": text,
                    "rewards": {k: v[i] for k, v in rewards.items() if i < len(v)},
                    "advantage": advantages[i] if i < len(advantages) else None,
                }, ensure_ascii=False) + "\n")
