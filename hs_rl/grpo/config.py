"""Every option a stage may set, with its default in one dataclass each (parsed by TRL's parser from YAML + CLI).

- `DataArguments`: the dataset, the prompt, media sampling and what to do with bad or over-long samples.
- `OmniGRPOConfig`: TRL's `GRPOConfig` plus the omni-specific switches (rewards by name, encoder freezing).
- `OmniModelConfig`: TRL's `ModelConfig` (model path, dtype, attention, PEFT/LoRA) unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig, ModelConfig

from hs_rl.data.media import VideoSampling
from hs_rl.data.prompts import DEFAULT_SYSTEM_PROMPT

_VIDEO = VideoSampling()


@dataclass
class DataArguments:
    """What the stage trains on and how each sample becomes a prompt."""

    dataset: str | None = field(default=None, metadata={"help": "Records JSONL (or a HumanSense training JSON)."})
    system_prompt: str | None = field(default=DEFAULT_SYSTEM_PROMPT, metadata={"help": "System turn; '' for none."})
    think: bool = field(default=True, metadata={"help": "Ask for <think>…</think><answer>…</answer>."})
    prompt_source: str | None = field(default=None, metadata={
        "help": "HumanSense_bench/src of the benchmark code: train on its system and user text (its think "
                "templates with think: true) instead of ours; system_prompt is then unused."})
    video_fps: float = field(default=_VIDEO.fps, metadata={"help": "Frames sampled per second of video."})
    video_min_frames: int = field(default=_VIDEO.min_frames, metadata={"help": "Fewest frames per clip."})
    video_max_frames: int = field(default=_VIDEO.max_frames, metadata={"help": "Most frames per clip."})
    video_min_pixels: int = field(default=_VIDEO.min_pixels, metadata={"help": "Least pixels per frame."})
    video_max_pixels: int = field(default=_VIDEO.max_pixels, metadata={"help": "Most pixels per frame."})
    video_total_pixels: int = field(default=_VIDEO.total_pixels, metadata={"help": "Pixel budget of a clip."})
    validate_data: bool = field(default=True, metadata={"help": "Check every record and its media first."})
    skip_invalid: bool = field(default=False, metadata={"help": "Drop invalid records (listed beside the logs)."})
    fail_on_bad_media: bool = field(
        default=False, metadata={"help": "A file that breaks at run time is an error instead of a replaced sample."})
    max_prompt_length: int | None = field(
        default=None, metadata={"help": "Longest prompt in tokens, media included; never cut through media."})
    over_long_prompts: str = field(default="error", metadata={"help": "error | skip (replaced, counted, warned)."})

    def __post_init__(self):
        if self.prompt_source:  # a missing or unreadable checkout is an error now, not in a DataLoader worker
            from hs_rl.data.benchmark_prompts import load_prompt_source

            load_prompt_source(self.prompt_source)

    def video_sampling(self) -> VideoSampling:
        """The media module's sampling rules from these options."""
        return VideoSampling(fps=self.video_fps, min_frames=self.video_min_frames, max_frames=self.video_max_frames,
                             min_pixels=self.video_min_pixels, max_pixels=self.video_max_pixels,
                             total_pixels=self.video_total_pixels)


@dataclass
class OmniGRPOConfig(GRPOConfig):
    """TRL's GRPO options plus ours. Stages write `loss_type` and `beta` out: TRL's defaults are dapo and 0."""

    reward_funcs: list[str] = field(
        default_factory=lambda: ["format", "accuracy"],
        metadata={"help": "Reward specs: registered name, package.module:function or file.py:function."})
    freeze_vision_encoder: bool = field(default=True, metadata={"help": "Keep the vision tower frozen."})
    freeze_audio_encoder: bool = field(default=True, metadata={"help": "Keep the audio tower frozen."})
    freeze_experts: bool = field(
        default=False, metadata={"help": "MoE thinkers (Qwen3-Omni): keep the LM's expert weights frozen and train "
                                         "attention, routers and the rest (no effect on a dense LM)."})
    reward_errors: str = field(
        default="raise", metadata={"help": "raise: a reward exception stops the run; zero: it scores 0, counted."})
    completions_log: bool = field(
        default=True, metadata={"help": "Append each generation batch's completions and rewards to a JSONL."})
    shared_prefix: bool = field(
        default=True, metadata={"help": "Run a group's prompt once in the log-prob/loss forwards and reuse its KV "
                                        "cache for the group's completions (exact; off automatically with gradient "
                                        "checkpointing, ZeRO-3, PEFT or a MoE router aux loss)."})
    run_all_towers: bool | None = field(
        default=None, metadata={"help": "Run both encoders in every forward (needed by ZeRO-3; auto by default)."})

    def __post_init__(self):
        if self.reward_errors not in ("raise", "zero"):
            raise ValueError(f"reward_errors must be 'raise' or 'zero', got {self.reward_errors!r}")
        super().__post_init__()


@dataclass
class OmniModelConfig(ModelConfig):
    """TRL's model options (path, dtype, attention, LoRA); the thinker is loaded from a full or thinker-only folder."""
