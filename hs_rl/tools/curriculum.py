"""A learnable synthetic curriculum in the HumanSense formats: questions whose answer only the media can give.

Three families, one per training stage of the recipe (routing in hs_rl/resources/routing.yaml):

- `Curriculum_Video_Colour` (video, clips without an audio track): the colour of the big moving shape.
- `Curriculum_Audio_Pitch` (audio, wav files): the pitch band of a sound (a cluster of tones inside the band).
- `Curriculum_VideoAudio_ColourPitch` (video with its own audio track): the shape's colour AND the tone's band,
  two colours × two bands, so neither the frames nor the sound alone can tell the four options apart.

Within a family every question has the same text and the same options in the same order, so the media are the
only source of the answer; each class appears equally often (4 options: chance is 0.25). Training and held-out
questions use different clips (different positions, sizes, motions, shades, pitches and noise), drawn from the
seed: `make_curriculum(DIR, seed=N)` with another N is a fresh, different set.

Files: `train.json` (HumanSense training JSON, one question per entry) and `heldout_VQA.json` /
`heldout_AQA.json` (benchmark JSON, a list of questions per media file), media under `media/`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hs_rl.tools.fixture_writing import AUDIO_RATE, SINGLE, encode_audio, lettered, write_wav

VIDEO_TASK = "Curriculum_Video_Colour"
AUDIO_TASK = "Curriculum_Audio_Pitch"
VIDEO_AUDIO_TASK = "Curriculum_VideoAudio_ColourPitch"
# family (the demo's name for it) -> task_type
FAMILIES = {"video": VIDEO_TASK, "audio": AUDIO_TASK, "video_audio": VIDEO_AUDIO_TASK}
CHANCE = 0.25

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 60, 230), "white": (245, 245, 245)}
# pitch bands in Hz, a quarter of the mel scale each with gaps between them: a clip's sound is a cluster of partials
# spread over its band, so the band lights up many mel bins (a lone sine lit one bin of 128, a signal too faint for
# the frozen random audio tower of the demo model to carry)
BANDS = {"very low": (120.0, 450.0), "low": (750.0, 1400.0), "high": (2000.0, 3300.0), "very high": (4500.0, 7500.0)}
PARTIALS = 12
# the video+audio family's four classes, in option order (A-D): each class's letter is the one its colour has in
# the video family or the one its band has in the audio family, never neither, so no class has both earlier
# skills voting for one same wrong letter (red is A and green B in the video family; high is C, very high D)
# (the family's other order, red and blue with the very low and high bands, gave one class two votes for one wrong
# letter: after stage 2 the model never sampled its right one, and stage 3's learning of it cost stage 2's skill)
PAIR_CLASSES = (("red", "high"), ("green", "very high"), ("green", "high"), ("red", "very high"))
PAIR_TONES = {"high": "low", "very high": "high"}  # the two bands as the family's options name them (of the two)

QUESTIONS = {
    VIDEO_TASK: ("What colour is the large moving shape?", list(COLOURS)),
    AUDIO_TASK: ("Which pitch band is the tone in?", list(BANDS)),
    VIDEO_AUDIO_TASK: ("What colour is the shape, and is the tone low or high?",
                       [f"{colour}, {PAIR_TONES[band]} tone" for colour, band in PAIR_CLASSES]),
}
FRAME_SIZE = (112, 112)  # width, height: 16 video tokens per pair of frames, so the frames fill the prompt
FPS = 4
SECONDS = 2.0
TRAIN_PER_CLASS = 16
HELDOUT_PER_CLASS = 8


def _frames(colour: tuple[int, int, int], rng: np.random.Generator) -> list[np.ndarray]:
    """A grey background with a square of `colour` (shade jittered) that fills most of the frame, moving a little:
    the colour dominates every patch, so even a frozen random vision encoder tells the classes apart."""
    width, height = FRAME_SIZE
    total = int(FPS * SECONDS)
    background = 110  # the same grey in every clip: the shape is what differs
    shade = np.clip(np.array(colour) + rng.integers(-25, 26, size=3), 0, 255).astype(np.uint8)
    size = int(rng.integers(96, 109))
    y = int(rng.integers(0, height - size + 1))
    start, end = rng.integers(0, width - size + 1, size=2)
    frames = []
    for step in range(total):
        x = int(round(start + (end - start) * step / max(total - 1, 1)))
        image = np.empty((height, width, 3), dtype=np.uint8)
        image[:] = background
        image[y:y + size, x:x + size] = shade
        frames.append(image)
    return frames


def _write_clip(path: Path, frames: list[np.ndarray], audio: np.ndarray | None) -> None:
    """Encode H.264 frames, with an AAC track when `audio` is given."""
    import av

    width, height = FRAME_SIZE
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast"})
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p"
        stream = container.add_stream("aac", rate=AUDIO_RATE, layout="mono") if audio is not None else None
        for image in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode(None))
        if stream is not None:
            encode_audio(container, stream, audio)


def _tone_of(band: str, rng: np.random.Generator, seconds: float) -> np.ndarray:
    """PARTIALS sines at log-uniform frequencies inside the band, random phases, light noise (amplitude ≤ 0.5)."""
    low, high = BANDS[band]
    t = np.arange(int(round(seconds * AUDIO_RATE))) / AUDIO_RATE
    hz = np.exp(rng.uniform(np.log(low), np.log(high), size=PARTIALS))
    phases = rng.uniform(0, 2 * np.pi, size=PARTIALS)
    signal = np.sin(2 * np.pi * hz[:, None] * t[None, :] + phases[:, None]).sum(0)
    signal = 0.5 * signal / np.abs(signal).max() + 0.02 * rng.standard_normal(t.size)
    return np.clip(signal, -1, 1).astype(np.float32)


def _question(task: str, answer_index: int) -> dict[str, Any]:
    """The family's fixed question with the answer letter of class `answer_index`."""
    text, choices = QUESTIONS[task]
    return {"task_type": task, "question_pattern": SINGLE, "question": text,
            "options": lettered(choices, spaced=True), "answer": "ABCD"[answer_index]}


def _family_items(task: str, split: str, per_class: int, folder: Path, rng: np.random.Generator
                  ) -> list[tuple[str, dict[str, Any]]]:
    """Write `per_class` media files per class of one family; (relative media path, question) pairs."""
    items = []
    for index in range(4 * per_class):
        cls = index % 4
        stem = f"{split}_{task.split('_', 1)[1].lower()}_{index:03d}"
        if task == AUDIO_TASK:
            relative = f"media/{stem}.wav"
            write_wav(folder / relative, _tone_of(list(BANDS)[cls], rng, float(rng.uniform(2.0, 3.0))))
        elif task == VIDEO_TASK:
            relative = f"media/{stem}.mp4"
            _write_clip(folder / relative, _frames(COLOURS[list(COLOURS)[cls]], rng), None)
        else:
            colour, band = PAIR_CLASSES[cls]
            relative = f"media/{stem}.mp4"
            _write_clip(folder / relative, _frames(COLOURS[colour], rng), _tone_of(band, rng, SECONDS))
        items.append((relative, _question(task, cls)))
    return items


def curriculum_paths(output_dir: Path) -> dict[str, Path]:
    """Where the curriculum's files are (the keys `make_curriculum` returns)."""
    return {"root": output_dir, "train_json": output_dir / "train.json",
            "heldout_vqa": output_dir / "heldout_VQA.json", "heldout_aqa": output_dir / "heldout_AQA.json"}


def make_curriculum(output_dir: str | Path, seed: int = 0, train_per_class: int = TRAIN_PER_CLASS,
                    heldout_per_class: int = HELDOUT_PER_CLASS) -> dict[str, Path]:
    """Write the curriculum (reused when a finished set for the same seed and sizes is there)."""
    output_dir = Path(output_dir)
    paths = curriculum_paths(output_dir)
    stamp = json.dumps({"seed": seed, "train_per_class": train_per_class, "heldout_per_class": heldout_per_class})
    done = output_dir / "DONE"
    if done.is_file() and done.read_text() == stamp and all(p.exists() for p in paths.values()):
        return paths
    (output_dir / "media").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 9])
    train, heldout = [], {}
    for task in FAMILIES.values():
        for relative, question in _family_items(task, "train", train_per_class, output_dir, rng):
            train.append({"video_path": relative, "questions": question})
        heldout[task] = [{"video_path": relative, "questions": [question]}
                         for relative, question in _family_items(task, "heldout", heldout_per_class, output_dir, rng)]
    order = np.random.default_rng([seed, 10]).permutation(len(train))
    _write(paths["train_json"], [train[i] for i in order])
    _write(paths["heldout_vqa"], heldout[VIDEO_TASK] + heldout[VIDEO_AUDIO_TASK])
    _write(paths["heldout_aqa"], heldout[AUDIO_TASK])
    done.write_text(stamp)
    return paths


def _write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def heldout_records(data_dir: str | Path, family: str):
    """The held-out questions of one family, converted and routed as `hs-rl eval` does."""
    from hs_rl.data.convert import convert_humansense, load_routing, read_humansense

    paths = curriculum_paths(Path(data_dir))
    return [r for key in ("heldout_vqa", "heldout_aqa")
            for r in convert_humansense(read_humansense(paths[key]), load_routing(), Path(data_dir))
            if r.task_type == FAMILIES[family]]


def heldout_accuracy(thinker, processor, data_args, data_dir: str | Path, family: str,
                     max_new_tokens: int = 20) -> float:
    """Greedy accuracy of a thinker (e.g. a trainer's model, mid-run) on one family's held-out questions."""
    import torch
    from transformers import GenerationConfig

    from hs_rl.data.answers import score_answer
    from hs_rl.data.prompt_media import prepare_prompt
    from hs_rl.omni.generation import generate_rows

    records = heldout_records(data_dir, family)
    tokenizer = processor.tokenizer
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                              eos_token_id=tokenizer.eos_token_id)
    was_training = thinker.training
    thinker.eval()
    with torch.no_grad():
        rows = [prepare_prompt(r, processor, data_args)[0] for r in records]
        tokens = generate_rows(thinker, rows, config, [tokenizer.eos_token_id])
    thinker.train(was_training)
    texts = tokenizer.batch_decode(tokens, skip_special_tokens=True)
    return sum(score_answer(t, r.answer, r.question_type, r.options) for t, r in zip(texts, records)) / len(records)


def right_letter_probabilities(models: dict[str, str | Path], data_args, data_dir: str | Path
                               ) -> dict[str, dict[str, float]]:
    """Per model and family: the mean probability the model gives the right letter right after
    `<think></think><answer>` on the held-out questions (teacher-forced: the letter it would sample at temperature 1).

    Why beside greedy accuracy: a model that spreads its letters evenly (the warm-up's base, about 0.25 each)
    answers greedily with whichever letter leads by a hair for that clip, so its greedy accuracy is luck
    (0.00 to 0.53 measured); this probability is what "at chance" means for it. The prompts are prepared once and
    every model answers the same batch.
    """
    from hs_rl.omni.loading import load_processor, load_thinker

    processor = load_processor(next(iter(models.values())))
    batches = {family: _letter_batch(processor, data_args, data_dir, family) for family in FAMILIES}
    table = {}
    for label, model in models.items():
        thinker = load_thinker(model, dtype="float32")
        table[label] = {family: _right_probability(thinker, *batch) for family, batch in batches.items()}
    return table


def right_letter_probability(thinker, processor, data_args, data_dir: str | Path, family: str) -> float:
    """`right_letter_probabilities` for one thinker in memory (e.g. a trainer's model) and one family."""
    return _right_probability(thinker, *_letter_batch(processor, data_args, data_dir, family))


def _letter_batch(processor, data_args, data_dir: str | Path, family: str):
    """The family's held-out prompts, each followed by the answer's opening tags; right letters; letter ids."""
    import torch

    from hs_rl.data.prompt_media import prepare_prompt
    from hs_rl.tools.warmup import THOUGHT, collate

    tokenizer = processor.tokenizer
    prefix = torch.tensor(tokenizer(f"<think>{THOUGHT}</think><answer>", add_special_tokens=False)["input_ids"])
    letters = [tokenizer(letter, add_special_tokens=False)["input_ids"][0] for letter in "ABCD"]
    for letter, token in zip("ABCD", letters):  # the letter must be one token of its own after the tag
        whole = tokenizer(f"<think>{THOUGHT}</think><answer>{letter}", add_special_tokens=False)["input_ids"]
        if whole != prefix.tolist() + [token]:
            raise ValueError(f"this tokenizer does not split `<answer>{letter}` into the tag and one letter token")
    records = heldout_records(data_dir, family)
    batch = collate([{"media": prepare_prompt(r, processor, data_args)[0], "targets": [prefix]} for r in records])
    return batch, torch.tensor(["ABCD".index(r.answer) for r in records]), letters


def _right_probability(thinker, batch, right, letters) -> float:
    import torch

    from hs_rl.omni.inputs import lm_inputs, rope_positions

    was_training = thinker.training
    thinker.eval()
    with torch.no_grad():
        # use_cache=False: the towers' outputs differ per model (a stage may train a tower)
        embedded = lm_inputs(thinker, batch["input_ids"], batch["rows"], use_cache=False,
                             prompt_width=batch["prompt_width"])
        positions = rope_positions(thinker, batch["attention_mask"], batch["rows"], batch["prompt_width"])
        logits = thinker(**embedded, attention_mask=batch["attention_mask"], position_ids=positions).logits[:, -1]
    thinker.train(was_training)
    probabilities = logits.float().softmax(-1)[:, letters]
    return probabilities[torch.arange(len(right)), right].mean().item()
