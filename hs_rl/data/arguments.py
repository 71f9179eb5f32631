"""A stage's data options (`DataArguments`): the dataset, the prompt, media sampling and what to do with bad or
over-long samples; parsed by TRL's parser from YAML + CLI beside the trainer's (hs_rl.grpo.config)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

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
    prompt_cache_size: int = field(default=4, metadata={
        "help": "Built prompts (decoded media, token ids) kept in memory per data process, newest first: TRL asks "
                "for a prompt's num_generations repeats back to back, which 4 covers; a dataset small enough to keep "
                "whole (the demo's) decodes each clip once per data process and epoch (once per run with "
                "dataloader_num_workers: 0) instead of in every step that draws it. A clip changed on disk after it "
                "was kept is not read again; with DataLoader workers each kept row holds a few shared-memory file "
                "handles (mind `ulimit -n`)."})
    probe_datasets: dict | str | None = field(default=None, metadata={
        "help": "Small held-out sets measured while the stage trains, {NAME: FILE.jsonl}: TRL's evaluation on each "
                "(eval_strategy: steps, eval_steps: N), logged as eval_NAME_rewards/..., drawn in curves.png."})

    def __post_init__(self):
        check_choices(self)
        if self.prompt_cache_size < 0:
            raise ValueError(f"prompt_cache_size must be 0 or more, got {self.prompt_cache_size}")
        if self.prompt_source:  # a missing or unreadable checkout is an error now, not in a DataLoader worker
            from hs_rl.data.benchmark_prompts import load_prompt_source

            load_prompt_source(self.prompt_source)
