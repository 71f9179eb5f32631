"""One record -> its `PromptMedia`: the record's media decoded and one processor call on its chat prompt.

The step training (`hs_rl.data.dataset`, in DataLoader workers) and evaluation (`hs_rl.eval.evaluate`) share, so
a question is asked with the same tokens, frames and audio in both.
"""
from __future__ import annotations

from typing import Any

from hs_rl.data.media import load_audio, load_video
from hs_rl.data.prompts import build_messages
from hs_rl.data.records import Record, has_video
from hs_rl.grpo.config import DataArguments
from hs_rl.grpo.omni_inputs import PromptMedia


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
    if has_video(record.modality):
        clip = load_video(record.video, video_sampling_for(processor, data_args))
        kwargs["videos"] = [clip.frames]
        # frames arrive sampled and resized (qwen-omni-utils' rules): the processor's per-frame pixel cap, which only
        # acts inside its resize, cannot apply; saying so spares every process transformers' warning about it
        kwargs["videos_kwargs"] = {"fps": clip.sample_fps, "do_resize": False, "do_sample_frames": False,
                                   "cap_pixels_per_frame": False}
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
