"""Training prompts as a `datasets.Dataset` whose items are ready for the thinker (decoded and processed).

Each item is one record turned into its `PromptMedia` by `hs_rl.data.prompt_media` (the step eval shares).

Its on-access transform runs in DataLoader workers (`dataloader_num_workers`), so decoding (decord, PyAV) and the
processor's work happen ahead of the step, off the training process. A prompt is repeated G times by TRL's
sampler; a small per-worker cache returns the same `PromptMedia` object for the repeats, so a group's media
is decoded once and, after pickling, shared by its G rows instead of copied.

A file that breaks at run time (truncated, cut to its header or replaced after validation: `hs_rl.data.media`
reports every failure to read a file, whatever its class, as a MediaError, and refuses a clip that decodes to
nothing or to less than its header declares) is replaced by the next good sample, a whole record with its media,
so the row costs the same work as any other and the choice is the same on every rank; the row says so in
`media_problem` (counted as `media/replaced_samples`). With `fail_on_bad_media` it is an error instead.
Prompts longer than `max_prompt_length` are refused, or skipped the same way with `over_long_prompts: skip`, never
cut through their media tokens.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

import datasets
import torch

from hs_rl.data.arguments import DataArguments
from hs_rl.data.media import MediaError
from hs_rl.data.prompt_media import PromptMedia, PromptTooLongError, prepare_prompt
from hs_rl.data.records import Record, has_video

logger = logging.getLogger(__name__)


class PromptBuilder:
    """The on-access transform of the training `datasets.Dataset`: record columns → rows TRL's GRPOTrainer
    consumes (`prompt` messages, reward columns, and `media`). Runs in DataLoader workers."""

    def __init__(self, records: list[Record], processor, data_args: DataArguments, cache_size: int = 4,
                 keep_decoded: bool = False):
        self.records = records
        self.keep_decoded = keep_decoded  # rows keep their decoded frames and wave (a vLLM engine's inputs)
        self.processor = processor
        self.data_args = data_args
        self.cache_size = cache_size
        self._cache: OrderedDict[int, dict[str, Any]] = OrderedDict()

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        repeats = batch.get("repeat") or [False] * len(batch["index"])
        rows = [self.refetch_row(index) if repeat else self.row(index)
                for index, repeat in zip(batch["index"], repeats)]
        return {key: [row[key] for row in rows] for key in rows[0]}

    def refetch_row(self, index: int) -> dict[str, Any]:
        """A re-fetch of a buffered generation batch (see `FirstUseSampler`): the record's columns, no media."""
        record = self.records[index]
        return {"prompt": [], "id": record.id, "task_type": record.task_type, "modality": record.modality,
                "question_type": record.question_type, "answer": record.answer, "options": list(record.options),
                "media": None, "media_problem": "", "repeat": True}

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
        media, messages = prepare_prompt(record, self.processor, self.data_args, keep_decoded=self.keep_decoded)
        self._check_placeholders(record, media)
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
            "repeat": False,
        }

    def _check_placeholders(self, record: Record, media: PromptMedia) -> None:
        """A clip the processor turns into no placeholder tokens (audio of a few milliseconds) would reach the model
        as the question alone, trained on as if it had heard or seen it: a bad file like any other."""
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        wanted = [("video", record.video)] if has_video(record.modality) else []
        if record.modality in ("audio", "video_audio"):
            wanted.append(("audio", record.audio if record.modality == "audio" else record.video))
        for kind, path in wanted:
            token = getattr(self.processor, f"{kind}_token", None)
            if token and not bool((media.input_ids == tokenizer.convert_tokens_to_ids(token)).any()):
                raise MediaError(f"{path}: its {kind} gives the prompt no {kind} tokens (too short to encode)")


def build_train_dataset(records: list[Record], processor, data_args: DataArguments,
                        keep_decoded: bool = False) -> datasets.Dataset:
    """A `datasets.Dataset` (what TRL requires) of record indices whose rows are built on access.

    Rows `n … 2n-1` are the same records again, marked `repeat`: `FirstUseSampler` asks for them when TRL
    re-fetches a generation batch it has already generated from, and they carry no media.
    """

    if not records:
        raise ValueError("the training set is empty")
    count = len(records)
    table = datasets.Dataset.from_dict({"index": list(range(count)) * 2, "id": [r.id for r in records] * 2,
                                       "repeat": [False] * count + [True] * count})
    return table.with_transform(PromptBuilder(records, processor, data_args, cache_size=data_args.prompt_cache_size,
                                              keep_decoded=keep_decoded))


def prompt_count(dataset) -> int | None:
    """The number of records of a `build_train_dataset` dataset (half its rows), None for any other dataset.

    Known by its on-access transform being our `PromptBuilder`, not by a column name: a user's dataset may well
    have a column called `repeat`, and counting it as ours would halve it and send the sampler to rows it lacks.
    """
    fmt = getattr(dataset, "format", None)  # a datasets.Dataset's formatting, with its with_transform callable
    transform = (fmt.get("format_kwargs") or {}).get("transform") if isinstance(fmt, dict) else None
    return len(transform.records) if isinstance(transform, PromptBuilder) else None


class FirstUseSampler(torch.utils.data.Sampler):
    """TRL's RepeatSampler, with each generation batch's re-fetches pointed at the media-free `repeat` rows.

    TRL fetches the whole generation batch at every micro-step of a generation cycle (`steps_per_generation ×
    num_iterations` times) but generates from the first fetch only and reuses its buffer after. With
    DataLoader workers each fetch goes to the next worker, whose own cache has not seen the batch: every
    clip was decoded and processed once per worker (4× with the recipe's settings). Here the first fetch of a
    batch yields index `i` and the others `i + n`, served without media, so a clip is decoded once per use.
    """

    def __init__(self, sampler, offset: int):
        self.sampler, self.offset = sampler, offset
        self.period = sampler.batch_size * sampler.mini_repeat_count  # items of one pass over a chunk

    def __iter__(self):
        for position, index in enumerate(self.sampler):
            first = (position // self.period) % self.sampler.repeat_count == 0
            yield index if first else index + self.offset

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):  # a shuffling sampler (hs_rl.grpo.sampler.epoch_seeded)
            self.sampler.set_epoch(epoch)
