"""Training prompts as a `datasets.Dataset` whose items are ready for the thinker (decoded and processed).

Its on-access transform runs in DataLoader workers (`dataloader_num_workers`), so decoding (decord, PyAV) and the
processor's work happen ahead of the step, off the training process. A prompt is repeated G times by TRL's
sampler; a small per-worker cache returns the same `PromptMedia` object for the repeats, so a group's media
is decoded once and, after pickling, shared by its G rows instead of copied.

A file that breaks at run time (truncated or replaced after validation) is replaced by the next good
sample (the same on every rank, so ranks stay in step) and the row says so in `media_problem`; with
`fail_on_bad_media` it is an error instead. Prompts longer than `max_prompt_length` are refused, or
skipped the same way with `over_long_prompts: skip`, never cut through their media tokens.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

import datasets

from hs_rl.grpo.config import DataArguments
from hs_rl.data.media import MediaError, load_audio, load_video
from hs_rl.grpo.omni_inputs import PromptMedia
from hs_rl.data.prompts import build_messages
from hs_rl.data.records import Record

logger = logging.getLogger(__name__)


class PromptTooLongError(ValueError):
    """A prompt whose media and text exceed `max_prompt_length`."""


def video_sampling_for(processor, data_args: DataArguments):
    """The sampling rules with frame sides in multiples of the processor's patch x merge (28 for Qwen2.5-Omni, 32
    for Qwen3-Omni), since frames reach it already resized (`do_resize=False`)."""
    from dataclasses import replace

    sampling = data_args.video_sampling()
    video = getattr(processor, "video_processor", None)
    patch, merge = getattr(video, "patch_size", None), getattr(video, "merge_size", None)
    return replace(sampling, image_factor=patch * merge) if patch and merge else sampling


def processor_inputs(record: Record, processor, data_args: DataArguments,
                     messages: list[dict] | None = None) -> tuple[dict[str, Any], list[dict]]:
    """Decode the record's media and build the keyword arguments of ONE processor call for its prompt.

    Audio is passed whole and the feature extractor's truncation is off, so audio longer than 30 s is
    encoded in full (the audio tower windows it itself) instead of being silently cut to 30 s.
    """
    messages = messages or build_messages(record, data_args.system_prompt or None, think=data_args.think,
                                          prompt_source=data_args.prompt_source)
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    kwargs: dict[str, Any] = {"text": [text], "return_tensors": "pt"}
    if record.modality in ("video", "video_audio"):
        clip = load_video(record.video, video_sampling_for(processor, data_args))
        kwargs["videos"] = [clip.frames]
        kwargs["videos_kwargs"] = {"fps": clip.sample_fps, "do_resize": False, "do_sample_frames": False}
        if record.modality == "video_audio":
            kwargs["audio"] = [load_audio(record.video)]  # MediaError names the file if it has no track
            kwargs["load_audio_from_video"] = True
            kwargs["audio_from_video_indices"] = [0]
    elif record.modality == "audio":
        kwargs["audio"] = [load_audio(record.audio)]
    if "audio" in kwargs:
        samples = len(kwargs["audio"][0])
        kwargs["audio_kwargs"] = {"truncation": False, "max_length": max(samples, 16000 * 30)}
    return kwargs, messages


def prepare_prompt(record: Record, processor, data_args: DataArguments,
                   messages: list[dict] | None = None) -> tuple[PromptMedia, list[dict]]:
    """One record → its `PromptMedia` (token ids with media placeholders expanded, media tensors);
    `messages` overrides the conversation built from the record (evaluation passes the benchmark's)."""
    kwargs, messages = processor_inputs(record, processor, data_args, messages)
    output = processor(**kwargs)
    media = PromptMedia.from_processor_output(output, use_audio_in_video=record.modality == "video_audio")
    limit = data_args.max_prompt_length
    if limit is not None and media.input_ids.numel() > limit:
        raise PromptTooLongError(f"record {record.id}: prompt is {media.input_ids.numel()} tokens with its media, "
                                 f"over max_prompt_length={limit} (media tokens are never cut)")
    return media, messages


class PromptBuilder:
    """The on-access transform of the training `datasets.Dataset`: record columns → rows TRL's GRPOTrainer
    consumes (`prompt` messages, reward columns, and `media`). Runs in DataLoader workers."""

    def __init__(self, records: list[Record], processor, data_args: DataArguments, cache_size: int = 4):
        self.records = records
        self.processor = processor
        self.data_args = data_args
        self.cache_size = cache_size
        self._cache: OrderedDict[int, dict[str, Any]] = OrderedDict()

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        rows = [self.row(index) for index in batch["index"]]
        return {key: [row[key] for row in rows] for key in rows[0]}

    def row(self, index: int) -> dict[str, Any]:
        """Row `index`, from the small cache when TRL's sampler asks for a prompt's repeats."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        row = self._build_with_fallback(index)
        self._cache[index] = row
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return row

    def _build_with_fallback(self, index: int) -> dict[str, Any]:
        """Build row `index`, or the next buildable one when its media breaks (deterministic on every rank)."""
        problem = ""
        for offset in range(len(self.records)):
            record = self.records[(index + offset) % len(self.records)]
            try:
                return self._build(record, problem)
            except MediaError as err:
                if self.data_args.fail_on_bad_media:
                    raise MediaError(f"record {record.id}: {err}") from err
                problem = problem or f"record {record.id}: {err}"
            except PromptTooLongError as err:
                if self.data_args.over_long_prompts != "skip":
                    raise
                problem = problem or str(err)
            logger.warning("replacing a sample: %s", problem)
        raise RuntimeError(f"no record of the dataset could be loaded; first problem: {problem}")

    def _build(self, record: Record, problem: str) -> dict[str, Any]:
        media, messages = prepare_prompt(record, self.processor, self.data_args)
        return {
            "prompt": messages,
            "id": record.id,
            "task_type": record.task_type,
            "modality": record.modality,
            "question_type": record.question_type,
            "answer": record.answer,
            "options": list(record.options),
            "media": media,
            "media_problem": problem,
        }


def build_train_dataset(records: list[Record], processor, data_args: DataArguments) -> datasets.Dataset:
    """A `datasets.Dataset` (what TRL requires) of record indices whose rows are built on access."""

    if not records:
        raise ValueError("the training set is empty")
    table = datasets.Dataset.from_dict({"index": list(range(len(records))), "id": [r.id for r in records]})
    return table.with_transform(PromptBuilder(records, processor, data_args))
