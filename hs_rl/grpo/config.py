"""Every option a stage may set, with its default in one dataclass each (parsed by TRL's parser from YAML + CLI).

- `DataArguments`: the dataset, the prompt, media sampling and what to do with bad or over-long samples.
- `OmniGRPOConfig`: TRL's `GRPOConfig` plus the omni-specific switches (rewards by name, encoder freezing).
- `OmniModelConfig`: TRL's `ModelConfig` (model path, dtype, attention, PEFT/LoRA) unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import yaml
from trl import GRPOConfig, ModelConfig

from hs_rl.choices import check_choices
from hs_rl.data.media import VideoArguments
from hs_rl.data.prompts import DEFAULT_SYSTEM_PROMPT


@dataclass
class DataArguments(VideoArguments):
    """What the stage trains on and how each sample becomes a prompt (the `video_*` options: VideoArguments)."""

    dataset: str | None = field(default=None, metadata={"help": "Records JSONL (or a HumanSense training JSON)."})
    system_prompt: str | None = field(default=DEFAULT_SYSTEM_PROMPT, metadata={"help": "System turn; '' for none."})
    think: bool = field(default=True, metadata={"help": "Ask for <think>…</think><answer>…</answer>."})
    prompt_source: str | None = field(default=None, metadata={
        "help": "HumanSense_bench/src of the benchmark code: train on its system and user text (its think "
                "templates with think: true) instead of ours; system_prompt is then unused."})
    validate_data: bool = field(default=True, metadata={"help": "Check every record and its media first."})
    skip_invalid: bool = field(default=False, metadata={"help": "Drop invalid records (listed beside the logs)."})
    fail_on_bad_media: bool = field(
        default=False, metadata={"help": "A file that breaks at run time is an error instead of a replaced sample."})
    max_prompt_length: int | None = field(
        default=None, metadata={"help": "Longest prompt in tokens, media included; never cut through media."})
    over_long_prompts: Literal["error", "skip"] = field(
        default="error", metadata={"help": "error | skip (replaced, counted, warned)."})
    expect_modalities: list[str] | None = field(default=None, metadata={
        "help": "The record modalities this stage trains (video, audio, video_audio); records of any other are "
                "warned about at start. Default: what the stage's name says (stage1_video: video), if it names one."})
    modality_mismatch: Literal["warn", "error"] = field(default="warn", metadata={
        "help": "warn | error: what records of a modality expect_modalities (or the stage's name) leaves out do."})
    replay: dict | str | None = field(default=None, metadata={
        "help": "Earlier stages' records mixed into this stage's, {SOURCE: FRACTION}: round(FRACTION x this stage's "
                "record count) records of each SOURCE (a records JSONL; in a pipeline YAML an earlier stage's name), "
                "drawn from the run's seed, validated like the stage's own (hs_rl.data.replay)."})
    probe_datasets: dict | str | None = field(default=None, metadata={
        "help": "Small held-out sets measured while the stage trains, {NAME: FILE.jsonl}: TRL's evaluation on each "
                "(eval_strategy: steps, eval_steps: N), logged as eval_NAME_rewards/..., drawn in curves.png."})

    def __post_init__(self):
        check_choices(self)
        if self.prompt_source:  # a missing or unreadable checkout is an error now, not in a DataLoader worker
            from hs_rl.data.benchmark_prompts import load_prompt_source

            load_prompt_source(self.prompt_source)


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
            from hs_rl.grpo.model import check_model_dir

            check_model_dir(self.ref_model_name_or_path)  # a wrong path fails here, before any model loads


@dataclass
class OmniModelConfig(ModelConfig):
    """TRL's model options (path, dtype, attention, LoRA); the thinker is loaded from a full or thinker-only folder."""
