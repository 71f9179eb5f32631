"""One record -> its `PromptMedia`: the record's media decoded and one processor call on its chat prompt.

`PromptMedia` is what the Omni runtime (hs_rl.omni.inputs) turns into the thinker's inputs; it is defined here,
with the step that makes it, so that the data layer needs nothing above it.

The step training (`hs_rl.data.dataset`, in DataLoader workers) and evaluation (`hs_rl.eval.evaluate`) share, so
a question is asked with the same tokens, frames and audio in both.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import torch

from hs_rl.data.arguments import DataArguments
from hs_rl.data.media import load_audio, load_video
from hs_rl.data.prompts import build_messages
from hs_rl.data.records import Record, has_video

MEDIA_KEYS = ("pixel_values_videos", "video_grid_thw", "video_second_per_grid", "input_features",
              "feature_attention_mask")


@dataclass(eq=False)
class PromptMedia:
    """One prompt as the thinker needs it. Identity (not value) equality: rows of a group share one object."""

    input_ids: torch.Tensor  # (P,) prompt tokens, media placeholders expanded
    use_audio_in_video: bool = False
    pixel_values_videos: torch.Tensor | None = None  # (patches, C*T*p*p)
    video_grid_thw: torch.Tensor | None = None  # (n_videos, 3)
    video_second_per_grid: torch.Tensor | None = None  # (n_videos,)
    input_features: torch.Tensor | None = None  # (n_audios, mels, frames)
    feature_attention_mask: torch.Tensor | None = None  # (n_audios, frames)
    cache: dict[str, Any] = field(default_factory=dict, repr=False)  # encoder outputs, rope of the prompt
    # the media as decoded for the processor, for a rollout engine that runs its own processor (vLLM):
    # {"video": uint8 (T, H, W, 3), "fps": float, "audio": float32 16 kHz wave}; None unless asked for
    decoded: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def has_video(self) -> bool:
        return self.pixel_values_videos is not None

    @property
    def has_audio(self) -> bool:
        return self.input_features is not None

    @classmethod
    def from_processor_output(cls, output: dict[str, Any], use_audio_in_video: bool) -> PromptMedia:
        """Take row 0 of a processor call made for a single prompt."""
        kwargs = {k: output[k] for k in MEDIA_KEYS if output.get(k) is not None}
        if "video_second_per_grid" in kwargs:
            kwargs["video_second_per_grid"] = torch.as_tensor(kwargs["video_second_per_grid"], dtype=torch.float32)
        return cls(input_ids=output["input_ids"][0].clone(), use_audio_in_video=use_audio_in_video, **kwargs)

    def to(self, device: torch.device | str) -> PromptMedia:
        """Move tensors in place (the object is shared by the rows of its group) and return self."""
        for name in ("input_ids", *MEDIA_KEYS):
            value = getattr(self, name)
            if value is not None and value.device != torch.device(device):
                setattr(self, name, value.to(device))
        return self


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


def takes_audio_from_video(processor) -> bool:
    """Whether the processor names a video's audio track with `load_audio_from_video` / `audio_from_video_indices`
    (transformers 5.23) rather than `use_audio_in_video` (5.20, where every audio given belongs to a video, in
    order), read from the keyword arguments it declares (once per declaration, not per record). Read through the
    instance, so a wrapper that forwards attributes (evaluation's `LockedProcessor`) answers as what it wraps."""
    return _declares_audio_from_video(getattr(processor, "valid_processor_kwargs", None))


@functools.cache
def _declares_audio_from_video(declared: type | None) -> bool:
    import typing

    return declared is not None and "load_audio_from_video" in typing.get_type_hints(declared)


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
            if takes_audio_from_video(processor):
                kwargs["load_audio_from_video"] = True
                kwargs["audio_from_video_indices"] = [0]
            else:  # transformers 5.20: the one audio given is the video's, interleaved with its frames the same way
                kwargs["use_audio_in_video"] = True
    elif record.modality == "audio":
        kwargs["audio"] = [load_audio(record.audio)]
    if "audio" in kwargs:
        samples = len(kwargs["audio"][0])
        kwargs["audio_kwargs"] = {"truncation": False, "max_length": max(samples, 16000 * 30)}
    return kwargs, messages


def prepare_prompt(record: Record, processor, data_args: DataArguments,
                   messages: list[dict] | None = None, *, keep_decoded: bool = False) -> tuple[PromptMedia, list[dict]]:
    """One record → its `PromptMedia` (token ids with media placeholders expanded, media tensors);
    `messages` overrides the conversation built from the record (evaluation passes the benchmark's).
    `keep_decoded`: the row also keeps the frames and wave the processor was given (`PromptMedia.decoded`), which
    a vLLM engine needs to run its own processor on exactly what hs-rl decoded."""
    kwargs, messages = processor_inputs(record, processor, data_args, messages)
    output = processor(**kwargs)
    media = PromptMedia.from_processor_output(output, use_audio_in_video=record.modality == "video_audio")
    if keep_decoded:
        media.decoded = {}
        if "videos" in kwargs:  # uint8 (T, C, H, W) tensor -> (T, H, W, C) array, the layout vLLM takes
            frames = kwargs["videos"][0].permute(0, 2, 3, 1).contiguous().numpy()
            media.decoded.update(video=frames, fps=float(kwargs["videos_kwargs"]["fps"]))
        if "audio" in kwargs:
            media.decoded["audio"] = kwargs["audio"][0]
    limit = data_args.max_prompt_length
    if limit is not None and media.input_ids.numel() > limit:
        raise PromptTooLongError(f"record {record.id}: prompt is {media.input_ids.numel()} tokens with its media, "
                                 f"over max_prompt_length={limit} (media tokens are never cut)")
    return media, messages
