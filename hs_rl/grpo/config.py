"""The trainer's options, with their defaults in one dataclass each (parsed by TRL's parser from YAML + CLI); a
stage's data options are `hs_rl.data.arguments.DataArguments`.

`OmniGRPOConfig` keeps this import path: TRL pickles it into every checkpoint (`training_args.bin`).

- `OmniGRPOConfig`: TRL's `GRPOConfig` plus the omni-specific switches (rewards by name, encoder freezing).
- `OmniModelConfig`: TRL's `ModelConfig` (model path, dtype, attention, PEFT/LoRA) unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import yaml
from trl import GRPOConfig, ModelConfig

from hs_rl.choices import check_choices


@dataclass
class OmniGRPOConfig(GRPOConfig):
    """TRL's GRPO options plus ours. Stages write `loss_type` and `beta` out: TRL's defaults are dapo and 0."""

    reward_funcs: list[str] = field(
        default_factory=lambda: ["format", "accuracy"],
        metadata={"help": "Reward specs: registered name, package.module:function or file.py:function (relative "
                          "to the stage YAML's folder, else the current directory)."})
    reward_kwargs: dict | str | None = field(
        default=None, metadata={"help": "Settings per reward, e.g. {think_length: {max_words: 256}}: a registered "
                                        "name's factory (or the factory a module/file spec names) is called with "
                                        "them."})
    freeze_vision_encoder: bool = field(default=True, metadata={"help": "Keep the vision tower frozen."})
    freeze_audio_encoder: bool = field(default=True, metadata={"help": "Keep the audio tower frozen."})
    freeze_experts: bool = field(
        default=False, metadata={"help": "MoE thinkers (Qwen3-Omni): keep the LM's expert weights frozen and train "
                                         "attention, routers and the rest (no effect on a dense LM)."})
    reward_errors: Literal["raise", "zero"] = field(
        default="raise", metadata={"help": "raise: a reward exception stops the run; zero: it scores 0, counted."})
    completions_log: bool = field(
        default=True, metadata={"help": "Append each generation batch's completions and rewards to a JSONL."})
    shared_prefix: bool = field(
        default=True, metadata={"help": "Pack each micro-batch of whole groups into one sequence: a group's prompt "
                                        "runs once, its completions attend to it (exact; works with gradient "
                                        "checkpointing, ZeRO-3 and LoRA; a micro-batch that splits a group uses the "
                                        "plain per-row forward; Qwen3-Omni: refused, DeepStack)."})
    keep_adapter: bool = field(
        default=False, metadata={"help": "LoRA (use_peft): also keep the adapter in OUTPUT_DIR/final_adapter; final/ "
                                         "always holds the merged model."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "A fresh run into an output_dir holding complete checkpoints of an earlier "
                                         "run deletes them (otherwise it is refused, naming them)."})
    run_all_towers: bool | None = field(
        default=None, metadata={"help": "Run both encoders in every forward, a dummy where no row needs one. Auto: on "
                                        "with several processes under ZeRO-3/FSDP or with a trained encoder (every "
                                        "process must run the same modules); false is refused there."})
    reference_shares_frozen: bool = field(
        default=True, metadata={"help": "beta > 0: the reference model uses the policy's own tensors for every "
                                        "parameter the policy keeps frozen (the towers; the experts with "
                                        "freeze_experts) instead of a second copy. Off by itself under ZeRO-3 and "
                                        "FSDP, with ref_model_name_or_path and with sync_ref_model."})
    ref_model_name_or_path: str | None = field(
        default=None, metadata={"help": "The KL term's reference model (beta > 0): a model folder. Default: the model "
                                        "the stage starts from (TRL's). A chain of stages can anchor every stage "
                                        "to one model, e.g. the one before stage 1. Not with LoRA (its reference "
                                        "is the adapter switched off)."})

    def __post_init__(self):
        if isinstance(self.reward_kwargs, str):  # from the command line: a YAML/JSON mapping
            self.reward_kwargs = yaml.safe_load(self.reward_kwargs) or {}
        if self.reward_kwargs is not None and not isinstance(self.reward_kwargs, dict):
            raise ValueError(f"reward_kwargs must map reward names to settings, got {self.reward_kwargs!r}")
        check_choices(self)
        if self.remove_unused_columns:
            raise ValueError("remove_unused_columns: true would drop the rows' media and the columns the rewards read "
                             "(answer, question_type, options); leave it false (TRL's default)")
        super().__post_init__()
        if self.ref_model_name_or_path and self.beta == 0:
            raise ValueError(f"ref_model_name_or_path={self.ref_model_name_or_path!r} has no use with beta 0 (no KL "
                             "term): set beta > 0 or drop it")
        if self.ref_model_name_or_path and self.sync_ref_model:
            raise ValueError("ref_model_name_or_path with sync_ref_model: true: the sync would replace that reference "
                             "with the policy every ref_model_sync_steps; drop one of the two")
        if self.ref_model_name_or_path:
            from hs_rl.omni.loading import check_model_dir

            check_model_dir(self.ref_model_name_or_path)  # a wrong path fails here, before any model loads


@dataclass
class OmniModelConfig(ModelConfig):
    """TRL's model options (path, dtype, attention, LoRA); the thinker is loaded from a full or thinker-only folder."""
