"""Real decoding of the generated sample media: frame sampling, resizing, audio tracks, broken files."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from hs_rl.data.media import (
    MediaError,
    VideoSampling,
    chunk_audio,
    frame_max_pixels,
    has_audio_track,
    load_audio,
    load_video,
    probe_audio,
    probe_video,
    smart_nframes,
    smart_resize,
)
from hs_rl.tools.sample_data import clip_fps, clip_seconds, clip_tone_hz, wav_tone_hz
from tests.data.broken_media import audio_track_cut, cut_wav, faststart_copy, sliver_video, tone_wav


def _clip(sample_data, index: int) -> Path:
    return sample_data["media_root"] / "media" / "videos" / f"clip_{index:02d}.mp4"


def _peak_hz(samples: np.ndarray, rate: int = 16000) -> float:
    """Dominant frequency of a signal, by FFT."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum) * rate / samples.size)


# ------------------------------------------------------------------------------------------ pure rules

@pytest.mark.parametrize("total,fps,want_fps,expected", [
    (20, 10.0, 2.0, 4),     # 2 s at 2 fps
    (20, 10.0, 3.0, 6),
    (20, 10.0, 0.5, 4),     # raised to min_frames
    (20, 10.0, 20.0, 20),   # capped at the source frame count
    (15, 10.0, 10.0, 14),   # floored to an even count
    (3000, 30.0, 2.0, 200),
    (100000, 30.0, 2.0, 768),  # capped at max_frames
])
def test_smart_nframes_rule(total, fps, want_fps, expected):
    assert smart_nframes(total, fps, VideoSampling(fps=want_fps)) == expected


def test_smart_nframes_too_short_video():
    with pytest.raises(ValueError):
        smart_nframes(1, 10.0, VideoSampling())


def test_smart_resize_rule():
    assert smart_resize(48, 64, 28, 4 * 784, 6 * 784) == (56, 56)
    assert smart_resize(48, 64, 28, 4 * 784, 3 * 784) == (28, 56)      # shrunk below max_pixels
    assert smart_resize(48, 64, 28, 128 * 784, 768 * 784) == (280, 392)  # grown above min_pixels
    h, w = smart_resize(1080, 1920, 28, 128 * 784, 768 * 784)
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 768 * 784 and w > h


def test_frame_max_pixels_shares_total_budget():
    sampling = VideoSampling(min_pixels=4 * 784, total_pixels=100 * 784)
    assert frame_max_pixels(20, sampling) == 10 * 784   # 100*784 / 20 frames * frame_factor 2
    assert frame_max_pixels(2, sampling) == 100 * 784
    assert frame_max_pixels(2, VideoSampling()) == 768 * 784  # the per-frame ceiling


# ------------------------------------------------------------------------------------------ video

@pytest.mark.parametrize("index,want_fps", [(0, 2.0), (0, 5.0), (1, 2.0), (2, 10.0)])
def test_load_video_frame_count_and_fps(sample_data, index, want_fps):
    clip = load_video(_clip(sample_data, index), VideoSampling(fps=want_fps))
    source = int(round(clip_fps(index) * clip_seconds(index)))
    assert clip.num_source_frames == source
    assert clip.duration_s == pytest.approx(clip_seconds(index), abs=1e-6)
    expected = smart_nframes(source, clip_fps(index), VideoSampling(fps=want_fps))
    assert clip.frames.shape[0] == expected
    assert clip.sample_fps == pytest.approx(expected / clip_seconds(index))


def test_load_video_known_clip(sample_data):
    clip = load_video(sample_data["video_with_audio"])  # clip_00: 2 s at 10 fps
    assert clip.frames.shape == (4, 3, 280, 392)
    assert clip.frames.dtype == torch.uint8
    assert clip.sample_fps == pytest.approx(2.0)


def test_load_video_resizes_to_multiples_of_28_within_max_pixels(sample_data):
    sampling = VideoSampling(fps=2.0, min_pixels=4 * 784, max_pixels=3 * 784)
    clip = load_video(_clip(sample_data, 3), sampling)
    _, channels, height, width = clip.frames.shape
    assert channels == 3
    assert height % 28 == 0 and width % 28 == 0
    assert height * width <= 3 * 784
    assert (height, width) == (28, 56)


def test_frames_really_differ(sample_data):
    first = load_video(_clip(sample_data, 0)).frames.float()
    second = load_video(_clip(sample_data, 1)).frames.float()
    assert first.shape[1:] == second.shape[1:]
    assert (first[0] - second[0]).abs().mean() > 10
    assert (first[0] - first[-1]).abs().mean() > 0.5  # the shape moves within a clip
    assert first.std() > 5


def test_load_video_missing_file_names_it(tmp_path):
    missing = tmp_path / "nope.mp4"
    for call in (load_video, probe_video, load_audio, probe_audio, has_audio_track):
        with pytest.raises(MediaError, match="nope.mp4"):
            call(missing)


def test_load_video_undecodable_file(tmp_path):
    bogus = tmp_path / "text.mp4"
    bogus.write_text("this is not a video\n" * 50)
    with pytest.raises(MediaError, match="text.mp4"):
        load_video(bogus)
    with pytest.raises(MediaError, match="text.mp4"):
        probe_video(bogus)


def test_probe_video(sample_data):
    info = probe_video(sample_data["video_with_audio"])
    assert info.num_frames == 20 and info.fps == pytest.approx(10.0)
    assert info.duration_s == pytest.approx(2.0) and info.has_audio
    assert not probe_video(sample_data["video_without_audio"]).has_audio


def test_truncated_mp4_raises(sample_data, tmp_path):
    data = sample_data["video_with_audio"].read_bytes()
    broken = tmp_path / "half.mp4"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="half.mp4"):
        probe_video(broken)
    with pytest.raises(MediaError, match="half.mp4"):
        load_video(broken)


def test_truncated_faststart_mp4_raises(sample_data, tmp_path):
    """With the index at the front a truncated file still opens: decoding must notice missing frames."""
    faststart = tmp_path / "faststart.mp4"
    faststart_copy(sample_data["video_without_audio"], faststart)
    assert probe_video(faststart).num_frames == 15
    data = faststart.read_bytes()
    broken = tmp_path / "cut.mp4"
    broken.write_bytes(data[: int(len(data) * 0.7)])
    with pytest.raises(MediaError, match="cut.mp4"):
        probe_video(broken)


# ------------------------------------------------------------------------------------------ audio

def test_has_audio_track(sample_data):
    assert has_audio_track(sample_data["video_with_audio"]) is True
    assert has_audio_track(sample_data["video_without_audio"]) is False
    assert has_audio_track(sample_data["wav"]) is True


@pytest.mark.parametrize("index", [0, 5])
def test_audio_from_video_track(sample_data, index):
    samples = load_audio(_clip(sample_data, index))
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(samples.size - clip_seconds(index) * 16000) <= 0.1 * 16000
    assert np.abs(samples).max() <= 1.0
    assert _peak_hz(samples) == pytest.approx(clip_tone_hz(index), abs=5)


def test_video_without_audio_raises_naming_file(sample_data):
    path = sample_data["video_without_audio"]
    with pytest.raises(MediaError, match=f"{path.name}: has no audio track"):
        load_audio(path)


def test_wav_loads_at_16k(sample_data):
    samples = load_audio(sample_data["wav"])
    assert samples.size == 16000  # speech_00 is 1 s
    assert _peak_hz(samples) == pytest.approx(wav_tone_hz(0), abs=3)
    assert load_audio(sample_data["wav"], sampling_rate=8000).size == pytest.approx(8000, abs=64)


def test_stereo_44k_wav_resampled_to_mono_16k(tmp_path):
    t = np.arange(44100) / 44100
    tone = 0.4 * np.sin(2 * np.pi * 1000 * t)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([tone, tone], axis=1), 44100)
    samples = load_audio(path)
    assert samples.size == pytest.approx(16000, abs=64)
    assert _peak_hz(samples) == pytest.approx(1000, abs=3)
    assert probe_audio(path).sample_rate == 44100


def test_long_wav_is_not_cut(sample_data):
    samples = load_audio(sample_data["long_wav"])
    assert samples.size == 35 * 16000
    pieces = chunk_audio(samples, 16000, max_seconds=30)
    assert [p.size for p in pieces] == [30 * 16000, 5 * 16000]
    assert np.array_equal(np.concatenate(pieces), samples)
    assert len(chunk_audio(samples[:16000])) == 1


def test_probe_audio(sample_data):
    info = probe_audio(sample_data["wav"])
    assert info.sample_rate == 16000 and info.duration_s == pytest.approx(1.0)
    assert probe_audio(sample_data["long_wav"]).duration_s == pytest.approx(35.0)


@pytest.mark.parametrize("offset,junk", [(0, b"XXXX"), (20, b"\xff" * 16)])
def test_wav_with_broken_header_raises(sample_data, tmp_path, offset, junk):
    data = bytearray(sample_data["wav"].read_bytes())
    data[offset:offset + len(junk)] = junk
    broken = tmp_path / "broken.wav"
    broken.write_bytes(bytes(data))
    with pytest.raises(MediaError, match="broken.wav"):
        probe_audio(broken)


# ------------------------------------------------------------------------------------------ files cut short

def test_probe_audio_refuses_a_clip_too_short_to_encode(tmp_path):
    """6 ms of audio is a whole file, but no audio token comes of it: validation says so."""
    blip = tone_wav(tmp_path / "blip.wav", seconds=0.006)
    assert load_audio(blip).size == 96
    with pytest.raises(MediaError, match="blip.wav: audio is 6 ms long, under the 100 ms"):
        probe_audio(blip)


@pytest.mark.parametrize("kept,held", [(0.0, "0.00"), (1 / 3, "1.00")], ids=["header_only", "a_third"])
def test_wav_cut_short_of_its_header_raises(tmp_path, kept, held):
    """Cut to its 44-byte header, or to a third of its data: PyAV and soundfile decode what is left without an
    error (nothing, or the first second), so the header's declared length is what tells."""
    cut = cut_wav(tone_wav(tmp_path / "cut.wav"), kept)
    for call in (load_audio, probe_audio):
        with pytest.raises(MediaError, match=rf"cut.wav: truncated wav, its header declares 3.00 s of audio and "
                                             rf"the file holds {held} s"):
            call(cut)


def _wav_bytes(samples: np.ndarray, data_size: int | None = None, trailer: bytes = b"") -> bytes:
    """A 16 kHz mono PCM wav built chunk by chunk: `data_size` overrides the data chunk's declared size."""
    pcm = (samples * 32767).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(pcm) if data_size is None else data_size) + pcm + trailer
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("data_size,trailer", [(0xFFFFFFFF, b""), (None, b"LIST" + struct.pack("<I", 4) + b"INFO")],
                         ids=["streamed", "chunk_after_data"])
def test_whole_wavs_with_unusual_headers_still_load(tmp_path, data_size, trailer):
    """A streamed wav (length unknown when its header was written) and one with a chunk after its data are whole."""
    samples = (0.5 * np.sin(2 * np.pi * 700 * np.arange(16000) / 16000)).astype(np.float32)
    path = tmp_path / "whole.wav"
    path.write_bytes(_wav_bytes(samples, data_size, trailer))
    loaded = load_audio(path)
    assert loaded.size == 16000 and _peak_hz(loaded) == pytest.approx(700, abs=3)


def test_video_whose_audio_track_is_cut_short_raises(sample_data, tmp_path):
    """The file cut at a packet boundary after its last video packet: every frame decodes, and PyAV decodes the
    audio track to its last whole packet without an error; the container's index says how much is missing."""
    cut = audio_track_cut(sample_data["video_with_audio"], tmp_path / "cut.mp4")
    assert probe_video(cut).num_frames == 20  # the video track is whole
    for call in (load_audio, probe_audio):
        with pytest.raises(MediaError, match=r"cut.mp4: truncated audio, decoded 1.9\d s of the 2.00 s"):
            call(cut)
    assert load_audio(tmp_path / "cut_whole.mp4").size >= 32000  # the same track, whole


def test_video_with_a_frame_size_the_rules_refuse(tmp_path):
    """A 402x2 clip decodes, but no frame size can be chosen for it (aspect ratio over 200): the probe passed it and
    load_video raised a bare ValueError, which the dataset's fallback did not catch."""
    path = sliver_video(tmp_path / "sliver.mp4")
    for call in (probe_video, load_video):
        with pytest.raises(MediaError, match="sliver.mp4: frame size 402x2 has an aspect ratio above 200"):
            call(path)
