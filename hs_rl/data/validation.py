"""Check every record and its media before training, and report every problem in one run.

Accepts our records JSONL or a HumanSense JSON file (converted in memory with the default routing; its
locations read ``entry N``). Relative media paths are looked up as given, then against the checked file's
folder. A clean result is cached under ``$HS_RL_CACHE_DIR/validation`` (default ``~/.cache/hs_rl/data/validation``)
keyed by the file's bytes and the mtime and size of every media file it names, so re-validating an unchanged
dataset decodes nothing, and touching any media file forces a fresh check.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hs_rl.atomic_files import atomic_write
from hs_rl.data import media
from hs_rl.data.answers import option_letters
from hs_rl.data.convert import ConvertError, convert_entry, default_routing, read_humansense
from hs_rl.data.records import MODALITIES, QUESTION_TYPES, Record, has_video

# part of the clean-result cache key: raised whenever the checks get stricter, so that a dataset found clean by
# weaker checks is checked again (2: files cut short of their declared length, frame sizes, video audio tracks)
SCHEMA_VERSION = 2


@dataclass
class Problem:
    """One thing wrong with one record (or with the file itself when record_id is None)."""

    file: str
    location: str
    record_id: str | None
    reason: str

    def format(self) -> str:
        """One human-readable line: file, location, id, reason."""
        ident = f" [{self.record_id}]" if self.record_id else ""
        return f"{self.file}: {self.location}{ident}: {self.reason}"


@dataclass
class ValidationReport:
    """The records that parsed (with their locations) and every problem found."""

    path: str
    records: list[Record] = field(default_factory=list)
    locations: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    cached: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    def format(self) -> str:
        """The report for humans: a summary line, then one line per problem."""
        origin = " (cached)" if self.cached else ""
        head = f"{self.path}: {len(self.records)} records, {len(self.problems)} problems{origin}"
        return "\n".join([head, *(f"  {p.format()}" for p in self.problems)])


# ---------------------------------------------------------------- loading

def _is_humansense(path: Path) -> bool:
    """HumanSense files are one JSON document (a list, or an entry with `questions`); ours are JSONL."""
    if path.suffix.lower() == ".jsonl":
        return False
    with open(path, encoding="utf-8") as handle:
        head = handle.read(4096).lstrip()
    if head.startswith("["):
        return True
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "questions" in data


def _load_jsonl(path: Path, report: ValidationReport) -> None:
    """Parse line by line, recording broken lines as problems instead of stopping."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"line {number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                report.problems.append(Problem(str(path), where, None, f"not valid JSON ({err.msg})"))
                continue
            if not isinstance(obj, dict):
                report.problems.append(Problem(str(path), where, None, "expected a JSON object"))
                continue
            try:
                record = Record.from_dict(obj)
            except TypeError as err:
                reason = f"missing a required field ({err})"
                report.problems.append(Problem(str(path), where, _str_or_none(obj.get("id")), reason))
                continue
            report.records.append(record)
            report.locations.append(where)


def _load_humansense(path: Path, report: ValidationReport, media_root: Path | None) -> None:
    """Convert entry by entry so one bad entry is reported without hiding the others."""
    try:
        entries = read_humansense(path)
    except ConvertError as err:
        report.problems.append(Problem(str(path), "file", None, str(err)))
        return
    routing, root, seen = default_routing(), media_root or path.resolve().parent, {}
    for index, entry in enumerate(entries):
        try:
            records = convert_entry(entry, index, routing, root, source=str(path), seen_ids=seen)
        except ConvertError as err:
            report.problems.append(Problem(str(path), err.location or f"entry {index}", None, err.reason))
            continue
        for q_index, record in enumerate(records):
            report.records.append(record)
            report.locations.append(f"entry {index}" if len(records) == 1 else f"entry {index}, question {q_index}")


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


# ---------------------------------------------------------------- checks

def _check_fields(record: Record) -> list[str]:
    """Schema and answer checks that need no media."""
    reasons = []
    if record.question_type not in QUESTION_TYPES:
        reasons.append(f"unknown question_type {record.question_type!r} (expected one of {', '.join(QUESTION_TYPES)})")
    if record.modality not in MODALITIES:
        reasons.append(f"unknown modality {record.modality!r} (expected one of {', '.join(MODALITIES)})")
    elif has_video(record.modality) and not record.video:
        reasons.append(f"modality {record.modality} needs a video path")
    elif record.modality == "audio" and not record.audio:
        reasons.append("modality audio needs an audio path")
    answer = str(record.answer)
    if record.question_type in ("single_choice", "multi_choice"):
        if not isinstance(record.options, list) or not record.options:
            reasons.append(f"{record.question_type} question has no options")
        else:
            letters = set(option_letters(record.options))
            wrong = [c for c in answer if c not in letters]
            if not answer or wrong:
                reasons.append(f"answer {answer!r} is not among the option letters {''.join(sorted(letters))}")
            elif record.question_type == "single_choice" and len(answer) != 1:
                reasons.append(f"single_choice answer {answer!r} must be exactly one letter")
    elif record.question_type == "number" and not re.fullmatch(r"-?\d+", answer):
        reasons.append(f"number answer {answer!r} is not an integer")
    elif record.question_type == "yes_no" and answer not in ("yes", "no"):
        reasons.append(f"yes_no answer {answer!r} is not 'yes' or 'no'")
    return reasons


def _resolve_media(media_path: str, base: Path) -> Path:
    """A media path as given when it exists, else relative to the checked file's folder."""
    path = Path(media_path)
    if path.is_absolute() or path.exists():
        return path
    return base / path


class _MediaChecker:
    """Decodes each media file once per run, however many records share it."""

    def __init__(self) -> None:
        self._video: dict[Path, media.VideoInfo | str] = {}
        self._audio: dict[Path, media.AudioInfo | str] = {}

    @staticmethod
    def _probe(cache: dict, path: Path, probe: Callable[[Path], Any]) -> Any:
        if path not in cache:
            try:
                cache[path] = probe(path)
            except media.MediaError as err:
                cache[path] = str(err)
            except Exception as err:  # a decoder crash on one file must not hide the other problems
                cache[path] = f"{path}: {type(err).__name__}: {err}"
        return cache[path]

    def check(self, record: Record, base: Path) -> list[str]:
        """Existence, decodability (whole: a file cut short of what its header or container declares is refused),
        and a whole audio track for video_audio records."""
        reasons = []
        if has_video(record.modality) and record.video:
            path = _resolve_media(record.video, base)
            if not path.is_file():
                reasons.append(f"video file not found: {record.video}")
            else:
                info = self._probe(self._video, path, media.probe_video)
                if isinstance(info, str):
                    reasons.append(f"video does not decode: {info}")
                elif record.modality == "video_audio" and not info.has_audio:
                    reasons.append(f"video_audio record but the video has no audio track: {record.video}")
                elif record.modality == "video_audio":  # training decodes the track too: prove it whole
                    track = self._probe(self._audio, path, media.probe_audio)
                    if isinstance(track, str):
                        reasons.append(f"audio track does not decode: {track}")
        if record.modality == "audio" and record.audio:
            path = _resolve_media(record.audio, base)
            if not path.is_file():
                reasons.append(f"audio file not found: {record.audio}")
            else:
                info = self._probe(self._audio, path, media.probe_audio)
                if isinstance(info, str):
                    reasons.append(f"audio does not decode: {info}")
        return reasons


def _check_records(report: ValidationReport, base: Path) -> None:
    """Run every check on every record, appending one Problem per reason."""
    checker = _MediaChecker()
    first_seen: dict[str, str] = {}
    for record, where in zip(report.records, report.locations):
        reasons = _check_fields(record)
        if record.id in first_seen:
            reasons.append(f"duplicate id (first at {first_seen[record.id]})")
        else:
            first_seen[record.id] = where
        reasons += checker.check(record, base)
        report.problems += [Problem(report.path, where, record.id, r) for r in reasons]


# ---------------------------------------------------------------- cache

def cache_dir() -> Path:
    """Where clean results are remembered; `HS_RL_CACHE_DIR` replaces ``~/.cache/hs_rl``."""
    root = os.environ.get("HS_RL_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "hs_rl")
    return Path(root) / "validation"


def cache_key(path: Path, records: list[Record], base: Path | None = None) -> str:
    """sha256 over the file bytes and size, the schema version, and every media file's path, mtime and size."""
    digest = hashlib.sha256()
    data = path.read_bytes()
    digest.update(f"v{SCHEMA_VERSION}\n{len(data)}\n".encode())
    digest.update(hashlib.sha256(data).digest())
    base = base or path.resolve().parent
    for media_path in sorted({m for r in records for m in r.media_paths()}):
        resolved = _resolve_media(media_path, base)
        try:
            stat = resolved.stat()
            stamp = f"{stat.st_mtime_ns}:{stat.st_size}"
        except OSError:
            stamp = "missing"
        digest.update(f"\n{resolved.resolve()}\t{stamp}".encode())
    return digest.hexdigest()


def _cache_file(key: str) -> Path:
    return cache_dir() / f"{key}.json"


def _remember_clean(key: str, report: ValidationReport) -> None:
    """Best effort: an unwritable cache only costs a re-check next time."""
    target = _cache_file(key)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, json.dumps({"path": report.path, "records": len(report.records), "clean": True}))
    except OSError:
        pass


# ---------------------------------------------------------------- entry points

def validate_file(path: str | Path, *, use_cache: bool = True,
                  media_root: str | Path | None = None) -> ValidationReport:
    """Check every record of a JSONL or HumanSense JSON file; all problems are collected, none raised.

    `media_root` is where relative media paths live (default: the file's folder).
    """
    path = Path(path)
    base = Path(media_root).resolve() if media_root else path.resolve().parent
    report = ValidationReport(path=str(path))
    if not path.is_file():
        report.problems.append(Problem(str(path), "file", None, "file not found"))
        return report
    if _is_humansense(path):
        _load_humansense(path, report, base)
    else:
        _load_jsonl(path, report)
    key = cache_key(path, report.records, base) if use_cache and not report.problems else None
    if key and _cache_file(key).is_file():
        report.cached = True
        return report
    _check_records(report, base)
    if key and report.ok:
        _remember_clean(key, report)
    return report


def filter_valid(report: ValidationReport) -> tuple[list[Record], list[Problem]]:
    """Records with no problem, and every problem (what `skip_invalid: true` drops and logs)."""
    bad = {p.location for p in report.problems}
    kept = [r for r, where in zip(report.records, report.locations) if where not in bad]
    return kept, list(report.problems)


def write_dropped(dropped: list[Problem], path: str | Path) -> None:
    """Write the dropped problems as JSONL so a run leaves a trace of what it skipped."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for problem in dropped:
            handle.write(json.dumps(asdict(problem), ensure_ascii=False) + "\n")


@dataclass
class ValidateArguments:
    """Options of `hs-rl validate-data FILE`."""

    path: str = field(default=None, metadata={"help": "Records JSONL or HumanSense JSON file to check."})
    media_root: str | None = field(default=None, metadata={
        "help": "Folder that relative media paths are resolved against (default: the file's folder)."})
    no_cache: bool = field(default=False, metadata={"help": "Re-check everything even if a clean result is cached."})


def run_validate(args: ValidateArguments) -> int:
    """CLI body: print the report; exit status 1 when anything is wrong."""
    if not args.path:
        print("hs-rl validate-data: a file to check is required")
        return 2
    report = validate_file(args.path, use_cache=not args.no_cache, media_root=args.media_root)
    print(report.format())
    missing = [p.reason.split("file not found: ", 1)[1] for p in report.problems if "file not found: " in p.reason]
    if not args.media_root and any(not os.path.isabs(m) for m in missing):
        print("hint: relative media paths were looked up next to the file; pass --media_root if they live elsewhere")
    elif missing:  # absolute paths (as `hs-rl convert` writes them): --media_root cannot help here
        print("hint: the records name absolute paths; if the media live elsewhere, convert the HumanSense JSON again "
              "with --media_root set to the folder its video_path values are relative to")
    return 1 if report.problems else 0
