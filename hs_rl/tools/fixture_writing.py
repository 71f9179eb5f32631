"""What both offline fixture builders (`sample_data`, the HumanSense-shaped files; `curriculum`, the learnable
set the demo trains on) write the same way: 16 kHz mono audio, into a wav or an mp4's AAC track, and questions in
HumanSense's wording with lettered options."""
from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np

AUDIO_RATE = 16000
SINGLE = "Multiple-choice question (select one answer choice)"
LETTERS = "ABCDE"


def encode_audio(container: Any, stream: Any, samples: np.ndarray, chunk: int = 1024) -> None:
    """Feed float samples to an audio encoder in fixed-size frames, then flush it."""
    import av

    for start in range(0, samples.size, chunk):
        piece = samples[start:start + chunk].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(piece), format="fltp", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def write_wav(path: Path, samples: np.ndarray) -> None:
    """16-bit mono PCM wav with the stdlib writer."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(AUDIO_RATE)
        handle.writeframes(pcm.tobytes())


def lettered(choices: list[str], spaced: bool) -> list[str]:
    """Prefix letters the two ways HumanSense writes them: "A. happy" or "A.son/father"."""
    sep = ". " if spaced else "."
    return [f"{LETTERS[i]}{sep}{text}" for i, text in enumerate(choices)]
