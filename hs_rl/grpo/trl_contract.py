"""The TRL / transformers API that `OmniGRPOTrainer` is written against, in one place.

Every Trainer method the trainer overrides, every private one it calls, the TRL attributes it reads, and the
module function it patches, each with the signature (parameter names and defaults, no annotations) and the class
it comes from in the TRL and transformers versions setup.py pins. tests/grpo/test_trl_contract.py checks them
against the installed packages in about a second, and that the trainer overrides exactly `OVERRIDES`: a TRL
upgrade that renames, moves or re-signs one of them fails there, not eighteen minutes into the suite, and a new
override must be listed here first. Why each one is overridden is said in hs_rl.grpo.trainer's docstring.
"""
from __future__ import annotations

# Trainer methods OmniGRPOTrainer overrides: name -> (the class that defines it, its signature there).
OVERRIDES: dict[str, tuple[str, str]] = {
    # construction: the reference model built as a thinker (with CREATE_MODEL_PATCH), checkpoint rotation moved
    "__init__": ("trl.trainer.grpo_trainer.GRPOTrainer",
                 "(self, model, reward_funcs=None, args=None, train_dataset=None, eval_dataset=None, "
                 "processing_class=None, reward_processing_classes=None, callbacks=None, optimizers=(None, None), "
                 "quantization_config=None, peft_config=None, tools=None, rollout_func=None, "
                 "environment_factory=None)"),
    # media: each row's video and audio through generation, log-probs and the loss
    "_generate_and_score_completions": ("trl.trainer.grpo_trainer.GRPOTrainer", "(self, inputs)"),
    "_compute_loss": ("trl.trainer.grpo_trainer.GRPOTrainer", "(self, model, inputs)"),
    "_tokenize_prompts": ("trl.trainer.grpo_trainer.GRPOTrainer", "(self, prompts)"),
    "_generate_single_turn": ("trl.trainer.grpo_trainer.GRPOTrainer",
                              "(self, prompt_ids, images, multimodal_fields, num_generations, "
                              "has_tool_images=False)"),
    "_get_per_token_logps_and_entropies": ("trl.trainer.grpo_trainer.GRPOTrainer",
                                           "(self, model, input_ids, attention_mask, logits_to_keep, "
                                           "batch_size=None, compute_entropy=False, compute_aux_loss=False, "
                                           "pixel_values=None, image_grid_thw=None, num_images=None, "
                                           "pixel_attention_mask=None, spatial_shapes=None, num_tiles=None, "
                                           "image_sizes=None, token_type_ids=None, mm_token_type_ids=None, "
                                           "image_position_ids=None)"),
    # checkpoints and resume (hs_rl.grpo.checkpoints)
    "_save_checkpoint": ("trl.trainer.grpo_trainer.GRPOTrainer", "(self, model, trial)"),
    "_load_from_checkpoint": ("transformers.trainer.Trainer", "(self, resume_from_checkpoint, model=None)"),
    "_load_optimizer_and_scheduler": ("trl.trainer.grpo_trainer.GRPOTrainer", "(self, checkpoint)"),
    "_load_best_model": ("transformers.trainer.Trainer", "(self)"),
    # data order (hs_rl.grpo.sampler, hs_rl.data.dataset.FirstUseSampler)
    "_get_train_sampler": ("trl.trainer.grpo_trainer.GRPOTrainer", "(self, dataset=None)"),
    "_run_epoch": ("transformers.trainer.Trainer",
                   "(self, model, epoch, train_dataloader, steps_in_epoch, num_update_steps_per_epoch, trial, "
                   "ignore_keys_for_eval, start_time, resume_from_checkpoint, epochs_trained, "
                   "steps_trained_in_current_epoch)"),
    "num_examples": ("transformers.trainer.Trainer", "(self, dataloader)"),
    # evaluation sets (probes) and their metric names
    "_get_eval_sampler": ("trl.trainer.grpo_trainer.GRPOTrainer", "(self, eval_dataset)"),
    "evaluate": ("transformers.trainer.Trainer",
                 "(self, eval_dataset=None, ignore_keys=None, metric_key_prefix='eval')"),
    "log": ("trl.trainer.grpo_trainer.GRPOTrainer", "(self, logs, start_time=None)"),
}

# Private methods called on the trainer (beyond `super()` in the overrides above): "Class.method" -> signature.
PRIVATE_CALLS: dict[str, tuple[str, str]] = {
    # hs_rl.grpo.checkpoints: the run folder a checkpoint is saved in
    "_get_output_dir": ("transformers.trainer.Trainer", "(self, trial)"),
    # _generate_single_turn: as TRL's own generation does, on `self._dist`
    "DistributedBackend.summon_full_params": ("trl.distributed.DistributedBackend", "(self, module, **kwargs)"),
    # use_vllm: the policy's weights gathered module by module under ZeRO-3 for the push (hs_rl.grpo.vllm_rollouts)
    "DistributedBackend.gather_params": ("trl.distributed.DistributedBackend", "(self, params)"),
}

# Functions of TRL called with keywords from the trainer: "module.function" -> signature.
FUNCTIONS: dict[str, str] = {
    "trl.models.unwrap_model_for_generation": "(model, accelerator, gather_deepspeed3_params=True, "
                                              "generation_kwargs=None, gradient_checkpointing_kwargs=None)",
}

# The patch: while GRPOTrainer.__init__ runs, this module global is replaced so that TRL's reference model is
# built as the checkpoint family's thinker (hs_rl.grpo.trainer._thinker_reference_models). It only works while
# TRL's __init__ looks the name up in that module at call time, which the test checks too.
CREATE_MODEL_PATCH: tuple[str, str, str] = (
    "trl.trainer.grpo_trainer", "create_model_from_path", "(model_id, architecture=None, **kwargs)")

# The second patch: with use_vllm, while GRPOTrainer.__init__ runs, the class it builds its colocated vLLM engine from
# is replaced by a placeholder (hs_rl.grpo.trainer._no_trl_vllm_engine); hs-rl's own engine generates instead.
VLLM_GENERATION_PATCH: tuple[str, str] = ("trl.trainer.grpo_trainer", "VLLMGeneration")

# The import-time hiding: TRL's generation modules (imported by its GRPO module) import vLLM whenever it is installed,
# behind `is_vllm_available()` calls made at import; hs-rl runs none of that code (its engine: hs_rl.omni.vllm_engine).
VLLM_IMPORT_GATES: tuple[str, ...] = ("trl.generation", "trl.generation.vllm_client", "trl.generation.vllm_generation")


def import_trl_grpo_without_vllm():
    """Import TRL's GRPO module with its import-time `is_vllm_available()` answering False, and return it.

    Why: hs-rl never runs TRL's vLLM code (server mode is refused; colocated, TRL's `VLLMGeneration` is replaced
    while its `__init__` runs and hs-rl's own engine imports vLLM itself), yet the import costs every training
    process about 4 s on 2 CPU cores, and vLLM's import rewrites torch settings (inductor's fallback list) in runs
    that never use it. The modules of `VLLM_IMPORT_GATES` load with the answer False and keep it (they bound the
    function by name), so TRL's own vLLM generation is unavailable in such a process; `trl.import_utils` and every
    module imported later get TRL's true answer. A process that imported them before keeps what it has."""
    import importlib
    import sys

    if "trl.trainer.grpo_trainer" not in sys.modules:
        import trl.import_utils as trl_imports

        real = trl_imports.is_vllm_available
        trl_imports.is_vllm_available = lambda *args, **kwargs: False
        try:
            for name in VLLM_IMPORT_GATES:
                importlib.import_module(name)
        finally:
            trl_imports.is_vllm_available = real
    return importlib.import_module("trl.trainer.grpo_trainer")


# Attributes GRPOTrainer sets in its own code that hs-rl reads or extends (`self._metrics[mode][key]`,
# `self._logs`, `self._dist`, ...): each must still be assigned there.
TRL_ATTRIBUTES: tuple[str, ...] = (
    "_metrics", "_logs", "_dist", "reward_func_names", "use_vllm", "use_transformers_continuous_batching",
    "generation_config", "generation_kwargs", "eos_token_ids", "num_generations", "num_generations_eval",
    "ref_model", "aux_loss_enabled",
    # use_vllm: the sampling settings the engine is given, and TRL's importance-sampling switch it reads
    "temperature", "top_p", "top_k", "max_completion_length", "vllm_importance_sampling_correction",
)
