"""The one record schema every part of hs-rl reads: one normalized JSON object per question.

Converters (HumanSense JSON -> records) live in `hs_rl.data.convert`; checks in `hs_rl.data.validation`.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from hs_rl.atomic_files import atomic_write

# The fixed vocabularies of a record, here only: everything else imports these names.
Modality = Literal["video", "audio", "video_audio"]
QuestionType = Literal["single_choice", "multi_choice", "number", "yes_no"]
MODALITIES: tuple[str, ...] = get_args(Modality)
QUESTION_TYPES: tuple[str, ...] = get_args(QuestionType)


def has_video(modality: str) -> bool:
    """Whether a record of this modality shows frames (`video`, and `video_audio` with its own track)."""
    return modality in ("video", "video_audio")


@dataclass
class Record:
    """One question with its media. `modality` decides which media the model sees.

    `video_audio` means the audio is the video's own track (`audio` is then null); `audio` means an audio
    file alone; `video` means frames only.
    """

    id: str
    task_type: str
    modality: Modality
    question: str
    question_type: QuestionType
    answer: str
    options: list[str] = field(default_factory=list)
    video: str | None = None
    audio: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """Build from a JSON object, ignoring keys set to None by Arrow and unknown extras."""
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        if kwargs.get("options") is None:
            kwargs["options"] = []
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def media_paths(self) -> list[str]:
        """The files this record needs, in the order they are read."""
        return [p for p in (self.video, self.audio) if p]


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for every non-blank line; a broken line is an error naming file and line."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not valid JSON ({err.msg})") from err
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
            yield number, obj


def load_records(path: str | Path) -> list[Record]:
    """Read a records JSONL file (no validation of media: see `hs_rl.data.validation`)."""
    records = []
    for number, obj in iter_jsonl(path):
        try:
            records.append(Record.from_dict(obj))
        except TypeError as err:
            raise ValueError(f"{path}:{number}: record is missing a required field ({err})") from err
    return records


def write_records(records: list[Record], path: str | Path) -> None:
    """Write records as JSONL, atomically (a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(record.to_dict(), ensure_ascii=False) + "\n" for record in records))
