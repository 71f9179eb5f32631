"""Decoding videos and audio into the tensors and arrays Qwen2.5-Omni's processor takes.

Video: frames are read with decord at evenly spaced indices, their count and size follow the
qwen-omni-utils rules (`smart_nframes`, `smart_resize`, reimplemented here), and they come back as uint8
T x C x H x W already resized (bicubic, antialiased).

Audio: float32 mono at 16 kHz from any container PyAV opens (wav/mp3/m4a/flac, or the audio track of a
video). Audio is never cut here: a clip longer than 30 s is returned whole. What the processor then does
(checked on transformers 5.23 with the real `Qwen2_5OmniProcessor`): `_process_audio` calls its
`WhisperFeatureExtractor` with `padding="max_length"` and the extractor's own defaults `truncation=True`,
`max_length=n_samples` (30 s * 16 kHz = 480,000 samples), so by default every clip is silently TRUNCATED to
its first 30 s (3,000 mel frames, 750 audio tokens; a 35 s clip loses its last 5 s). Two ways keep it all:
  * `audio_kwargs={"truncation": False}` (875 tokens for 35 s). In a batch mixing long and short clips this
    only stacks with `audio_kwargs={"truncation": False, "max_length": <longest clip in samples>}` plus
    `text_kwargs={"padding": True}`;
  * `chunk_audio` below: consecutive pieces of at most 30 s, each passed as its own audio input with its own
    audio placeholder in the prompt (35 s -> 30 s + 5 s -> 750 + 125 = 875 tokens, the same count).
"""
from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

AUDIO_SAMPLING_RATE = 16000
WHISPER_MAX_SECONDS = 30.0
# shorter audio gives Qwen2.5-Omni's audio tower no token at all (25 ms, 2.5 mel frames, is its least); validation
# refuses it, and the training dataset refuses any clip that yields no placeholder token (hs_rl.data.dataset)
MIN_AUDIO_SECONDS = 0.1
VIDEO_FRAME_MAX_PIXELS = 768 * 28 * 28  # qwen-omni-utils' hard per-frame ceiling


class MediaError(ValueError):
    """A media file is missing or unreadable; the message names the file and the problem.

    The loaders and probes below raise nothing else for a bad file: any other failure while reading one (a
    decoder's own error class, a ValueError from the frame-size rules, an OSError) is turned into a MediaError,
    so the training dataset's fallback (replace and count, or `fail_on_bad_media`) sees every kind.
    """


def _names_the_file(function: Callable) -> Callable:
    """Turn any failure of `function(path, ...)` into a MediaError naming the file and the original error."""

    @functools.wraps(function)
    def wrapper(path, *args, **kwargs):
        try:
            return function(path, *args, **kwargs)
        except MediaError:
            raise
        except Exception as err:  # decord, PyAV, numpy and our own rules each raise their own classes
            raise MediaError(f"{path}: cannot read media file ({type(err).__name__}: {_short(err)})") from err

    return wrapper


@dataclass
class VideoSampling:
    """How many frames to take and at which size (the qwen-omni-utils video defaults)."""

    fps: float = 2.0
    min_frames: int = 4
    max_frames: int = 768
    min_pixels: int = 128 * 28 * 28
    max_pixels: int = 768 * 28 * 28
    total_pixels: int = 24576 * 28 * 28
    frame_factor: int = 2
    image_factor: int = 28


_DEFAULT_SAMPLING = VideoSampling()


@dataclass
class VideoArguments:
    """The `video_*` options of `hs-rl train` (a stage's DataArguments) and `hs-rl eval`, declared once.

    Eval redeclares three defaults (the benchmark's fps rule, 24 frames of 360x420); the options are the same.
    """

    video_fps: float = field(default=_DEFAULT_SAMPLING.fps, metadata={"help": "Frames sampled per second of video."})
    video_min_frames: int = field(default=_DEFAULT_SAMPLING.min_frames, metadata={"help": "Fewest frames per clip."})
    video_max_frames: int = field(default=_DEFAULT_SAMPLING.max_frames, metadata={"help": "Most frames per clip."})
    video_min_pixels: int = field(default=_DEFAULT_SAMPLING.min_pixels, metadata={"help": "Least pixels per frame."})
    video_max_pixels: int = field(default=_DEFAULT_SAMPLING.max_pixels, metadata={"help": "Most pixels per frame."})
    video_total_pixels: int = field(default=_DEFAULT_SAMPLING.total_pixels,
                                    metadata={"help": "Pixel budget of a clip."})

    def video_options(self) -> dict[str, Any]:
        """These options by name (to copy them from one options dataclass into another)."""
        return {f.name: getattr(self, f.name) for f in fields(VideoArguments)}

    def video_sampling(self) -> VideoSampling:
        """The sampling rules these options describe."""
        return VideoSampling(fps=self.video_fps, min_frames=self.video_min_frames, max_frames=self.video_max_frames,
                             min_pixels=self.video_min_pixels, max_pixels=self.video_max_pixels,
                             total_pixels=self.video_total_pixels)


@dataclass
class VideoClip:
    """Sampled, resized frames plus the timing the processor needs for its position ids."""

    frames: torch.Tensor
    sample_fps: float
    num_source_frames: int
    duration_s: float


@dataclass
class VideoInfo:
    """What probing a video proved about it."""

    num_frames: int
    fps: float
    duration_s: float
    has_audio: bool


@dataclass
class AudioInfo:
    """What probing an audio file proved about it."""

    duration_s: float
    sample_rate: int


# ----------------------------------------------------------------------------------------------- rules

def _round_to(value: float, factor: int) -> int:
    """Nearest multiple of factor."""
    return int(round(value / factor)) * factor


def _ceil_to(value: float, factor: int) -> int:
    """Smallest multiple of factor not below value."""
    return int(math.ceil(value / factor)) * factor


def _floor_to(value: float, factor: int) -> int:
    """Largest multiple of factor not above value."""
    return int(math.floor(value / factor)) * factor


def smart_nframes(total_frames: int, video_fps: float, sampling: VideoSampling) -> int:
    """Frame count from duration*fps, clamped to [min_frames, max_frames, total] and floored to frame_factor."""
    factor = sampling.frame_factor
    lowest = _ceil_to(sampling.min_frames, factor)
    highest = _floor_to(min(sampling.max_frames, total_frames), factor)
    wanted = total_frames / video_fps * sampling.fps
    count = _floor_to(min(max(wanted, lowest), highest, total_frames), factor)
    if count < factor or count > total_frames:
        raise ValueError(f"cannot sample {count} frames (factor {factor}) from a video of {total_frames} frames")
    return count


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Sides that are multiples of factor, area within [min_pixels, max_pixels], aspect ratio kept."""
    if min(height, width) <= 0:
        raise ValueError(f"frame size {height}x{width} is empty")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio of {height}x{width} is above 200")
    new_h = max(factor, _round_to(height, factor))
    new_w = max(factor, _round_to(width, factor))
    if new_h * new_w > max_pixels:
        scale = math.sqrt(height * width / max_pixels)
        new_h = max(factor, _floor_to(height / scale, factor))
        new_w = max(factor, _floor_to(width / scale, factor))
    elif new_h * new_w < min_pixels:
        scale = math.sqrt(min_pixels / (height * width))
        new_h = _ceil_to(height * scale, factor)
        new_w = _ceil_to(width * scale, factor)
    return new_h, new_w


def frame_max_pixels(nframes: int, sampling: VideoSampling) -> int:
    """Per-frame pixel cap: the total budget shared over frame pairs, never below 1.05*min_pixels."""
    shared = sampling.total_pixels / nframes * sampling.frame_factor
    cap = max(min(VIDEO_FRAME_MAX_PIXELS, shared), int(sampling.min_pixels * 1.05))
    return int(min(sampling.max_pixels, cap))


def video_frame_size(height: int, width: int, nframes: int, sampling: VideoSampling) -> tuple[int, int]:
    """Target (height, width) for nframes frames of a height x width video."""
    return smart_resize(height, width, sampling.image_factor, sampling.min_pixels, frame_max_pixels(nframes, sampling))


# ----------------------------------------------------------------------------------------------- video

def _require_file(path: str | Path) -> Path:
    """Fail early, naming the file, when it does not exist."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: file not found")
    return path


def open_video(path: str | Path):
    """A decord reader of `path` (hs-rl's one way to open a video), with missing files and decord's errors as
    MediaError; `len(reader)` is the source frame count, read from the container index without decoding."""
    import decord

    path = _require_file(path)
    try:
        reader = decord.VideoReader(str(path), num_threads=1)
    except Exception as err:  # decord raises DECORDError/RuntimeError with C++ text
        raise MediaError(f"{path}: cannot decode video ({_short(err)})") from err
    if len(reader) == 0:
        raise MediaError(f"{path}: video has zero frames")
    return reader


def _short(err: BaseException) -> str:
    """First line of an error, without decord's long C++ traces."""
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def resize_frames(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic antialiased resize of uint8 T x C x H x W frames, back to uint8."""
    if tuple(frames.shape[-2:]) == (height, width):
        return frames.contiguous()
    resized = torch.nn.functional.interpolate(
        frames.float(), size=(height, width), mode="bicubic", align_corners=False, antialias=True
    )
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def _check_frame_shape(path: Path, height: int, width: int) -> None:
    """The frame-size rules' refusals (`smart_resize`), as a MediaError naming the file."""
    if min(height, width) <= 0:
        raise MediaError(f"{path}: frame size {width}x{height} is empty")
    if max(height, width) / min(height, width) > 200:
        raise MediaError(f"{path}: frame size {width}x{height} has an aspect ratio above 200, which the Qwen-Omni "
                         "frame rules refuse")


@_names_the_file
def load_video(path: str | Path, sampling: VideoSampling | None = None) -> VideoClip:
    """Sample and resize frames the way qwen-omni-utils does, so training sees what evaluation sees."""
    sampling = sampling or VideoSampling()
    path = _require_file(path)
    reader = open_video(path)
    total = len(reader)
    video_fps = float(reader.get_avg_fps())
    if not video_fps > 0:
        raise MediaError(f"{path}: video reports no frame rate")
    try:
        nframes = smart_nframes(total, video_fps, sampling)
    except ValueError as err:
        raise MediaError(f"{path}: {err}") from err
    indices = torch.linspace(0, total - 1, nframes).round().long().tolist()
    try:
        batch = reader.get_batch(indices).asnumpy()
    except Exception as err:
        raise MediaError(f"{path}: cannot decode frames ({_short(err)})") from err
    frames = torch.from_numpy(batch).permute(0, 3, 1, 2)
    _check_frame_shape(path, frames.shape[2], frames.shape[3])
    height, width = video_frame_size(frames.shape[2], frames.shape[3], nframes, sampling)
    duration = total / video_fps
    return VideoClip(resize_frames(frames, height, width), nframes / duration, total, duration)


def _open_av(path: Path):
    """Open a container with PyAV, turning its errors into MediaError."""
    import av

    try:
        return av.open(str(path))
    except Exception as err:
        raise MediaError(f"{path}: cannot open media file ({_short(err)})") from err


def has_audio_track(path: str | Path) -> bool:
    """True when the container has an audio stream (header inspection only, nothing decoded)."""
    path = _require_file(path)
    with _open_av(path) as container:
        return len(container.streams.audio) > 0


def _count_video_frames(path: Path) -> tuple[int, float, int]:
    """Decode every video frame with PyAV; return (decoded, fps, frames the header promises)."""
    import av

    with _open_av(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path}: has no video track")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        promised = int(stream.frames or 0)
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        decoded = 0
        try:
            for _ in container.decode(stream):
                decoded += 1
        except av.error.FFmpegError as err:
            raise MediaError(f"{path}: video stream is corrupt after {decoded} frames ({_short(err)})") from err
    return decoded, fps, promised


@_names_the_file
def probe_video(path: str | Path) -> VideoInfo:
    """Prove a video is fully decodable (both by decord and PyAV) before training relies on it: every frame
    decodes (PyAV), as many as the container promises, and decord (what training reads with) returns its first
    and last frames at a size the frame rules accept."""
    path = _require_file(path)
    decoded, fps, promised = _count_video_frames(path)
    if decoded == 0:
        raise MediaError(f"{path}: video has zero decodable frames")
    if promised and decoded < promised:
        raise MediaError(f"{path}: truncated video, decoded {decoded} of {promised} frames")
    reader = open_video(path)
    if decoded < len(reader):
        raise MediaError(f"{path}: truncated video, decoded {decoded} of {len(reader)} frames")
    try:
        ends = reader.get_batch([0, len(reader) - 1]).asnumpy()
    except Exception as err:  # decord's own error class, with C++ text
        raise MediaError(f"{path}: cannot decode frames ({_short(err)})") from err
    _check_frame_shape(path, ends.shape[1], ends.shape[2])
    fps = fps or float(reader.get_avg_fps())
    return VideoInfo(num_frames=len(reader), fps=fps, duration_s=len(reader) / fps, has_audio=has_audio_track(path))


# ----------------------------------------------------------------------------------------------- audio

# PyAV's wav demuxer and soundfile both take a wav's length from the bytes present, never from its header, so
# a wav cut short (its data chunk declaring more than the file holds) would decode without an error
_UNKNOWN_WAV_LENGTHS = (0, 0xFFFFFFFF)  # what streaming writers put in the data chunk before they know its size
# mp4/mov index every packet, so a track's declared duration is exact; the slack covers codec frame rounding
_INDEXED_FORMATS = ("mov", "mp4", "m4a")
_DURATION_SLACK_S = 0.05
_DURATION_SLACK_FRACTION = 0.01


def _check_wav_length(path: Path) -> None:
    """Refuse a RIFF/WAVE file whose data chunk declares more bytes than the file holds (cut after writing)."""
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # not a RIFF wav (RF64, or another container): its own reader judges it
        size, offset, byte_rate = path.stat().st_size, 12, 0
        while offset + 8 <= size:
            handle.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
            if chunk_id == b"fmt ":
                fmt = handle.read(16)
                byte_rate = struct.unpack("<I", fmt[8:12])[0] if len(fmt) >= 12 else 0
            elif chunk_id == b"data":
                held = size - offset - 8
                if chunk_size in _UNKNOWN_WAV_LENGTHS or held >= chunk_size:
                    return
                if byte_rate:
                    raise MediaError(f"{path}: truncated wav, its header declares {chunk_size / byte_rate:.2f} s of "
                                     f"audio and the file holds {held / byte_rate:.2f} s")
                raise MediaError(f"{path}: truncated wav, its header declares {chunk_size} bytes of audio and the "
                                 f"file holds {held}")
            offset += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to an even size


def _declared_seconds(container, stream) -> float | None:
    """The audio track's duration as an indexed container (mp4/mov) declares it; None for other formats."""
    names = set((container.format.name or "").split(","))
    if not names & set(_INDEXED_FORMATS) or not stream.duration or stream.time_base is None:
        return None
    return float(stream.duration * stream.time_base)


def _decode_audio(path: Path, sampling_rate: int) -> np.ndarray:
    """Decode the first audio stream, resampled to float mono at sampling_rate; a track that decodes to nothing,
    or (in an indexed container) to less than it declares, is a MediaError."""
    import av

    with _open_av(path) as container:
        if not container.streams.audio:
            raise MediaError(f"{path}: has no audio track")
        stream = container.streams.audio[0]
        declared = _declared_seconds(container, stream)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sampling_rate)
        pieces: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                pieces.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            pieces.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
        except av.error.FFmpegError as err:
            raise MediaError(f"{path}: audio stream is corrupt ({_short(err)})") from err
    count = sum(piece.size for piece in pieces)
    if count == 0:
        raise MediaError(f"{path}: audio decodes to zero samples")
    seconds = count / sampling_rate
    if declared is not None and seconds < declared - _DURATION_SLACK_S - _DURATION_SLACK_FRACTION * declared:
        raise MediaError(f"{path}: truncated audio, decoded {seconds:.2f} s of the {declared:.2f} s its container "
                         "declares")
    return np.clip(np.concatenate(pieces).astype(np.float32, copy=False), -1.0, 1.0)


def _check_wav_header(path: Path) -> None:
    """PyAV guesses formats from content, so check a .wav's RIFF header strictly with soundfile."""
    import soundfile

    try:
        soundfile.info(str(path))
    except Exception as err:
        raise MediaError(f"{path}: broken audio header ({_short(err)})") from err


@_names_the_file
def load_audio(path: str | Path, sampling_rate: int = AUDIO_SAMPLING_RATE) -> np.ndarray:
    """Whole audio (never cut at 30 s) as float32 mono in [-1, 1], from an audio file or a video's track.

    Checked on every load, not only by `probe_audio` at validation: a file cut after validation (to its header,
    or short of what its header or container declares) is a MediaError here, never silence or a shorter clip.
    """
    path = _require_file(path)
    if path.suffix.lower() in (".wav", ".flac"):
        _check_wav_header(path)
    _check_wav_length(path)
    return _decode_audio(path, sampling_rate)


@_names_the_file
def probe_audio(path: str | Path) -> AudioInfo:
    """Prove an audio file (or a video's audio track) is fully decodable and long enough to encode; report its
    length and native rate."""
    samples = load_audio(path)
    if samples.size < MIN_AUDIO_SECONDS * AUDIO_SAMPLING_RATE:
        raise MediaError(f"{path}: audio is {samples.size / AUDIO_SAMPLING_RATE * 1000:.0f} ms long, under the "
                         f"{MIN_AUDIO_SECONDS * 1000:.0f} ms an audio tower needs to encode it")
    with _open_av(Path(path)) as container:
        native_rate = int(container.streams.audio[0].rate or 0)
    return AudioInfo(duration_s=samples.size / AUDIO_SAMPLING_RATE, sample_rate=native_rate or AUDIO_SAMPLING_RATE)


def chunk_audio(
    samples: np.ndarray, sampling_rate: int = AUDIO_SAMPLING_RATE, max_seconds: float = WHISPER_MAX_SECONDS
) -> list[np.ndarray]:
    """Split audio into consecutive pieces of at most max_seconds, because the processor truncates at 30 s."""
    if max_seconds <= 0:
        raise ValueError("max_seconds must be positive")
    size = int(round(max_seconds * sampling_rate))
    if samples.size <= size:
        return [samples]
    return [samples[start:start + size] for start in range(0, samples.size, size)]
