"""Offline sample data shaped like HumanSense: short synthetic clips and tones, a training JSON, benchmark files.

Everything is generated (PyAV encoders, numpy signals), so demos and tests run without downloads.
Clips `clip_00`..`clip_13` carry an AAC tone of `300 + 100*i` Hz; `clip_14`.. have no audio track.
Wavs `speech_XX.wav` are 16 kHz tones of `500 + 150*i` Hz with a little noise; `long_35s.wav` is 35 s.
Multiple-answer questions store their letters concatenated in option order (e.g. "AC").
`hs-rl make-sample-data DIR` also writes the learnable curriculum the demo trains on to DIR/curriculum
(hs_rl/tools/curriculum.py); these HumanSense-shaped questions serve the evaluation and scoring tests.
"""
from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hs_rl.tools.fixture_writing import AUDIO_RATE, LETTERS, SINGLE, encode_audio, lettered, write_wav

NUM_CLIPS = 28
NUM_CLIPS_WITH_AUDIO = 14
NUM_WAVS = 7
CLIP_SIZE = (64, 48)  # width, height
CLIP_SECONDS = (2.0, 1.0, 1.5)
CLIP_FPS = (10, 8)
LONG_WAV_SECONDS = 35.0

MULTI = "Multiple-choice question (select one or more answer choices)"
NUMBER = "Question and answer (Arabic numerals)"
YES_NO = "Judgment question (Yes or No)"

AUDIO_ONLY_TASKS = ("Fraud_Recognition", "Psychological_Chat")
VIDEO_AUDIO_TASKS = ("Emo_Strategy", "Rapport_Recognition", "Talkingperson_Recognition",
                     "Familiarity_Recognition", "Relation_Recognition")
VIDEO_ONLY_TASKS = ("Abnormal_Recognition", "Action_Recognition", "Human_Counting")


# ----------------------------------------------------------------------------------------------- media

def clip_tone_hz(index: int) -> float:
    """Tone frequency of clip `index` (only clips below NUM_CLIPS_WITH_AUDIO have one)."""
    return 300.0 + 100.0 * index


def wav_tone_hz(index: int) -> float:
    """Tone frequency of `speech_{index}.wav`."""
    return 500.0 + 150.0 * index


def clip_seconds(index: int) -> float:
    """Duration of clip `index`, cycling so tests know each clip's length."""
    return CLIP_SECONDS[index % len(CLIP_SECONDS)]


def clip_fps(index: int) -> int:
    """Frame rate of clip `index`."""
    return CLIP_FPS[index % len(CLIP_FPS)]


def _tone(hz: float, seconds: float, rng: np.random.Generator, noise: float = 0.0) -> np.ndarray:
    """A sine at hz (amplitude 0.5) plus optional white noise, float32 at AUDIO_RATE."""
    t = np.arange(int(round(seconds * AUDIO_RATE))) / AUDIO_RATE
    signal = 0.5 * np.sin(2 * np.pi * hz * t)
    if noise:
        signal = signal + noise * rng.standard_normal(t.size)
    return np.clip(signal, -1, 1).astype(np.float32)


def _frame(index: int, step: int, total: int, rng_colors: np.ndarray,
           size_wh: tuple[int, int] = CLIP_SIZE) -> np.ndarray:
    """RGB frame: a coloured background with a shape that moves across it, different per clip."""
    width, height = size_wh
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = rng_colors[0]
    size = 10 + (index % 4) * 3
    progress = step / max(total - 1, 1)
    x = int(progress * (width - size)) if index % 2 == 0 else int((1 - progress) * (width - size))
    y = int((index * 7) % (height - size))
    if index % 3 == 0:  # a disc
        yy, xx = np.ogrid[:height, :width]
        mask = (yy - y - size / 2) ** 2 + (xx - x - size / 2) ** 2 <= (size / 2) ** 2
        image[mask] = rng_colors[1]
    else:  # a square, plus a stripe for clips that are not multiples of three
        image[y:y + size, x:x + size] = rng_colors[1]
        image[:, (step * 3 + index) % width] = rng_colors[2]
    return image


def write_clip(path: Path, index: int, rng: np.random.Generator, with_audio: bool, *, seconds: float | None = None,
               fps: int | None = None, size_wh: tuple[int, int] = CLIP_SIZE) -> None:
    """Encode one H.264 clip (yuv420p), optionally with an AAC tone track; short and small unless told otherwise
    (benchmarks/grpo_step.py --recipe asks for longer, larger clips, so that media fills most of a prompt)."""
    import av

    fps = clip_fps(index) if fps is None else fps
    seconds = clip_seconds(index) if seconds is None else seconds
    total = int(round(fps * seconds))
    colors = rng.integers(0, 256, size=(3, 3), dtype=np.uint8)
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        video.width, video.height = size_wh
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=AUDIO_RATE, layout="mono") if with_audio else None
        for step in range(total):
            frame = av.VideoFrame.from_ndarray(_frame(index, step, total, colors, size_wh), format="rgb24")
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            encode_audio(container, audio, _tone(clip_tone_hz(index), seconds, rng))


# ----------------------------------------------------------------------------------------------- questions

@dataclass
class _Question:
    """One question before it is attached to a media file."""

    task_type: str
    pattern: str
    question: str
    options: list[str] = field(default_factory=list)
    answer: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"task_type": self.task_type, "question_pattern": self.pattern, "question": self.question,
                "options": list(self.options), "answer": self.answer}


def _single(task: str, question: str, choices: list[str], rng: random.Random, spaced: bool = True) -> _Question:
    """Single-answer multiple choice with the correct choice shuffled into place."""
    order = choices[:]
    rng.shuffle(order)
    answer = LETTERS[order.index(choices[0])]
    return _Question(task, SINGLE, question, lettered(order, spaced), answer)


def _multi(task: str, question: str, choices: list[str], rng: random.Random) -> _Question:
    """Multiple-answer question over four options; one to three correct, letters in order."""
    picked = sorted(rng.sample(range(len(choices)), rng.randint(1, 3)))
    return _Question(task, MULTI, question, lettered(choices, True), "".join(LETTERS[i] for i in picked))


def _yes_no(task: str, question: str, rng: random.Random) -> _Question:
    """Judgment question with no options."""
    return _Question(task, YES_NO, question, [], rng.choice(["Yes", "No"]))


def _number(task: str, question: str, rng: random.Random) -> _Question:
    """Counting question answered with an integer 0..10 (10 included on purpose)."""
    return _Question(task, NUMBER, question, [], str(rng.choice([0, 1, 2, 3, 4, 5, 7, 10])))


MAKERS: dict[str, Callable[[random.Random], _Question]] = {
    "Fraud_Recognition": lambda r: r.choice([
        _yes_no("Fraud_Recognition", "Is the caller in this recording trying to defraud the listener?", r),
        _single("Fraud_Recognition", "What is the caller most likely trying to do?",
                ["obtain a bank verification code", "book a table", "ask for directions", "confirm a delivery"], r),
    ]),
    "Psychological_Chat": lambda r: _single(
        "Psychological_Chat", "Which reply would best support the speaker right now?",
        ["It sounds exhausting; do you want to tell me more?", "Just stop worrying.",
         "Everyone has problems.", "Let's change the subject."], r),
    "Emo_Strategy": lambda r: _single(
        "Emo_Strategy", "How should you respond to the person's emotional state?",
        ["comfort them gently", "laugh along", "ignore them", "criticize them"], r),
    "Rapport_Recognition": lambda r: _single(
        "Rapport_Recognition", "How would you describe the rapport between the two speakers?",
        ["warm", "hostile", "indifferent"], r),
    "Talkingperson_Recognition": lambda r: _single(
        "Talkingperson_Recognition", "Who is speaking in this clip?",
        ["the person on the left", "the person on the right", "nobody on screen", "both at once"], r, spaced=False),
    "Familiarity_Recognition": lambda r: _yes_no(
        "Familiarity_Recognition", "Are the two people in the video familiar with each other?", r),
    "Relation_Recognition": lambda r: _single(
        "Relation_Recognition", "What is the most likely relationship between the two people?",
        ["son/father", "colleagues", "strangers", "husband/wife", "teacher/student"], r, spaced=False),
    "Abnormal_Recognition": lambda r: _multi(
        "Abnormal_Recognition", "Which abnormal behaviours appear in the video?",
        ["falling down", "fighting", "running away", "vandalism"], r),
    "Action_Recognition": lambda r: _single(
        "Action_Recognition", "What is the person mainly doing?", ["waving", "running", "sitting", "jumping"], r),
    "Human_Counting": lambda r: _number("Human_Counting", "How many different people appear in the video?", r),
}


def _media_for(task: str, rng: random.Random, clips_audio: list[str], clips_silent: list[str],
               wavs: list[str]) -> str:
    """Pick the file a task reads: a wav, a clip with audio, or (mostly) a silent clip."""
    if task in AUDIO_ONLY_TASKS:
        return rng.choice(wavs)
    if task in VIDEO_AUDIO_TASKS:
        return rng.choice(clips_audio)
    return rng.choice(clips_audio if rng.random() < 0.2 else clips_silent)


def _tasks_cycle(tasks: tuple[str, ...], count: int) -> list[str]:
    """Repeat tasks round-robin so each appears."""
    return [tasks[i % len(tasks)] for i in range(count)]


def build_train_entries(rng: random.Random, clips_audio: list[str], clips_silent: list[str],
                        wavs: list[str]) -> list[dict[str, Any]]:
    """Training JSON: one entry per question, 48 questions over all ten task types."""
    tasks = _tasks_cycle(tuple(MAKERS), 48)
    entries = []
    for task in tasks:
        question = MAKERS[task](rng)
        entries.append({"video_path": _media_for(task, rng, clips_audio, clips_silent, wavs),
                        "questions": question.to_dict()})
    # make sure all four patterns appear whatever the seed
    entries.append({"video_path": wavs[0], "questions": _yes_no("Fraud_Recognition",
                    "Does the caller ask for a payment?", rng).to_dict()})
    entries.append({"video_path": wavs[1], "questions": _single("Fraud_Recognition",
                    "What does the caller ask for?", ["a password", "the weather"], rng).to_dict()})
    return entries


def build_benchmark(rng: random.Random, tasks: tuple[str, ...], count: int, clips_audio: list[str],
                    clips_silent: list[str], wavs: list[str]) -> list[dict[str, Any]]:
    """Benchmark JSON: entries per media file, each with a LIST of questions."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for task in _tasks_cycle(tasks, count):
        path = _media_for(task, rng, clips_audio, clips_silent, wavs)
        grouped.setdefault(path, []).append(MAKERS[task](rng).to_dict())
    return [{"video_path": path, "questions": questions} for path, questions in grouped.items()]


# ----------------------------------------------------------------------------------------------- driver

def _paths(output_dir: Path) -> dict[str, Path]:
    """Where everything lives (the keys make_sample_data returns)."""
    media = output_dir / "media"
    return {
        "root": output_dir,
        # media paths in the JSON files are relative to the files' own folder, as in the HumanSense release
        "media_root": output_dir,
        "train_json": output_dir / "humansense_train.json",
        "vqa_json": output_dir / "HumanSense_VQA.json",
        "aqa_json": output_dir / "HumanSense_AQA.json",
        "video_with_audio": media / "videos" / "clip_00.mp4",
        "video_without_audio": media / "videos" / f"clip_{NUM_CLIPS_WITH_AUDIO:02d}.mp4",
        "wav": media / "audio" / "speech_00.wav",
        "long_wav": media / "audio" / "long_35s.wav",
    }


def _write_json(path: Path, data: Any) -> None:
    """Pretty JSON, written whole."""
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def make_sample_data(output_dir: Path, seed: int = 0) -> dict[str, Path]:
    """Write clips, wavs, a training JSON and VQA/AQA benchmark files; reuse a finished set (DONE marker)."""
    output_dir = Path(output_dir)
    paths = _paths(output_dir)
    if (output_dir / "DONE").is_file() and all(p.exists() for p in paths.values()):
        return paths
    (output_dir / "media" / "videos").mkdir(parents=True, exist_ok=True)
    (output_dir / "media" / "audio").mkdir(parents=True, exist_ok=True)
    np_rng = np.random.default_rng(seed)
    clips_audio, clips_silent, wavs = [], [], []
    for index in range(NUM_CLIPS):
        relative = f"media/videos/clip_{index:02d}.mp4"
        with_audio = index < NUM_CLIPS_WITH_AUDIO
        write_clip(output_dir / relative, index, np_rng, with_audio)
        (clips_audio if with_audio else clips_silent).append(relative)
    for index in range(NUM_WAVS):
        relative = f"media/audio/speech_{index:02d}.wav"
        write_wav(output_dir / relative, _tone(wav_tone_hz(index), 1.0 + index % 3, np_rng, noise=0.02))
        wavs.append(relative)
    write_wav(paths["long_wav"], _tone(440.0, LONG_WAV_SECONDS, np_rng, noise=0.01))
    rng = random.Random(seed)
    _write_json(paths["train_json"], build_train_entries(rng, clips_audio, clips_silent, wavs))
    media_lists = (clips_audio, clips_silent, wavs)
    _write_json(paths["vqa_json"], build_benchmark(rng, VIDEO_AUDIO_TASKS + VIDEO_ONLY_TASKS, 24, *media_lists))
    _write_json(paths["aqa_json"], build_benchmark(rng, AUDIO_ONLY_TASKS, 8, *media_lists))
    (output_dir / "DONE").write_text(f"seed={seed}\n", encoding="utf-8")
    return paths


@dataclass
class SampleDataArguments:
    """Options of `hs-rl make-sample-data`."""

    output_dir: str = field(metadata={"help": "directory to write the sample media and JSON files into"})
    seed: int = field(default=0, metadata={"help": "seed for colours, tones, noise and answers"})


def run_make_sample_data(args: SampleDataArguments) -> int:
    """CLI entry: write the sample data and the learnable curriculum (OUTPUT_DIR/curriculum), say where."""
    from hs_rl.tools.curriculum import make_curriculum

    paths = make_sample_data(Path(args.output_dir), seed=args.seed)
    for key, path in paths.items():
        print(f"{key:20s} {path}")
    for key, path in make_curriculum(Path(args.output_dir) / "curriculum", seed=args.seed).items():
        print(f"{'curriculum_' + key:20s} {path}")
    return 0
