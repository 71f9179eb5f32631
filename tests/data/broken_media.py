"""Real media files broken the way files break on disk (cut short, index in front, odd geometry), for the tests
of decoding, validation and the training dataset's fallback."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from hs_rl.tools.fixture_writing import write_wav


def tone_wav(path: Path, seconds: float = 3.0, hz: float = 500.0) -> Path:
    """A real 16 kHz 16-bit wav from the sample-data writer (its header declares every sample)."""
    write_wav(path, (0.5 * np.sin(2 * np.pi * hz * np.arange(int(seconds * 16000)) / 16000)).astype(np.float32))
    return path


def cut_wav(path: Path, kept: float) -> Path:
    """Keep the 44-byte header and the first `kept` fraction of the data, as a copy cut short would."""
    data = path.read_bytes()
    path.write_bytes(data[:44 + int((len(data) - 44) * kept)])
    return path


def faststart_copy(source: Path, target: Path) -> list[tuple[str, int]]:
    """Remux with the index in front (so a cut file still opens); return each packet's (kind, file offset)."""
    with av.open(str(source)) as src, av.open(str(target), "w", format="mp4", options={"movflags": "faststart"}) as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            dst.mux(packet)
    with av.open(str(target)) as container:
        return [(p.stream.type, p.pos) for p in container.demux() if p.pos is not None and p.pos >= 0]


def audio_track_cut(source: Path, target: Path) -> Path:
    """`source` (a clip with audio) with its index in front, cut at a packet boundary after its last video packet:
    every frame is there, the audio track's last two packets are not."""
    whole = target.with_name(target.stem + "_whole.mp4")
    packets = faststart_copy(source, whole)
    last_video = max(pos for kind, pos in packets if kind == "video")
    tail = sorted(pos for kind, pos in packets if kind == "audio" and pos > last_video)
    assert len(tail) >= 2, packets
    target.write_bytes(whole.read_bytes()[:tail[-2]])
    return target


def video_cut_partway(source: Path, target: Path, kept: float = 0.6) -> Path:
    """`source` with its index in front, cut after `kept` of its bytes: it opens, but frames are missing."""
    whole = target.with_name(target.stem + "_whole.mp4")
    faststart_copy(source, whole)
    data = whole.read_bytes()
    target.write_bytes(data[:int(len(data) * kept)])
    return target


def sliver_video(path: Path, width: int = 402, height: int = 2) -> Path:
    """A real H.264 clip whose frames decode but whose aspect ratio (over 200) no frame size can follow."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 20 * i, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path
