"""HumanSense JSON -> records JSONL: the one place that knows the HumanSense file layout.

Input is a JSON list of ``{"video_path": ..., "questions": {...}}``; ``questions`` may be one dict (training
file) or a list of dicts (benchmark files). Each question becomes one `Record`.

Media paths: a relative ``video_path`` is resolved against ``media_root`` (default: the input file's folder)
and written as an absolute path, so the records file works from any working directory. Pass
``relative_paths=True`` (``--relative_paths``) to keep the paths exactly as the input gives them.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hs_rl.data.answers import PATTERN_TO_TYPE, normalize_key, question_type_from_pattern
from hs_rl.data.records import MODALITIES, Record, write_records

ROUTING_RESOURCE = "routing.yaml"
_MEDIA_KEYS = ("video_path", "audio_path")
_REQUIRED_QUESTION_KEYS = ("task_type", "question_pattern", "question", "answer")


class ConvertError(ValueError):
    """A problem in the input file; the message names the file, the entry index and what is wrong."""

    def __init__(self, message: str, location: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.location = location
        self.reason = reason or message


def _entry_error(source: str, location: str, reason: str) -> ConvertError:
    """An error that keeps location and reason apart, so validation can report them as fields."""
    return ConvertError(f"{source}: {location}: {reason}", location=location, reason=reason)


@dataclass
class Routing:
    """Which modality each task_type gets; task types not listed get `default`."""

    routes: dict[str, str] = field(default_factory=dict)
    default: str = "video"

    def modality(self, task_type: str) -> str:
        """The modality of one task type."""
        return self.routes.get(task_type, self.default)


def _check_modality(value: Any, where: str) -> str:
    if value not in MODALITIES:
        raise ConvertError(f"{where}: unknown modality {value!r} (expected one of {', '.join(MODALITIES)})")
    return value


def _parse_routing(data: Any, where: str) -> tuple[dict[str, str], str | None]:
    """Accept either a flat mapping task_type -> modality or ``{default: ..., routes: {...}}``."""
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        raise ConvertError(f"{where}: expected a mapping task_type -> modality")
    default = data.get("default") if "routes" in data or "default" in data else None
    routes = data.get("routes", {}) if "routes" in data else {k: v for k, v in data.items() if k != "default"}
    if not isinstance(routes, dict):
        raise ConvertError(f"{where}: `routes` must be a mapping task_type -> modality")
    checked = {str(k): _check_modality(v, f"{where}: task {k}") for k, v in routes.items()}
    if default is not None:
        _check_modality(default, f"{where}: default")
    return checked, default


def default_routing() -> Routing:
    """The HumanSense recipe's routing, read from the packaged YAML (works from a wheel)."""
    text = importlib.resources.files("hs_rl").joinpath("resources", ROUTING_RESOURCE).read_text("utf-8")
    routes, default = _parse_routing(yaml.safe_load(text), f"hs_rl/resources/{ROUTING_RESOURCE}")
    return Routing(routes=routes, default=default or "video")


def load_routing(path: str | Path | None = None, default_modality: str | None = None) -> Routing:
    """Default routing with a user YAML merged over it and an optional new default modality."""
    routing = default_routing()
    if path:
        with open(path, encoding="utf-8") as handle:
            routes, default = _parse_routing(yaml.safe_load(handle), str(path))
        routing.routes.update(routes)
        if default:
            routing.default = default
    if default_modality:
        routing.default = _check_modality(default_modality, "--default_modality")
    return routing


# ---------------------------------------------------------------- records

def _record_id(task_type: str, media: str, question: str, seen: dict[str, int]) -> str:
    """Content-derived id: stable when entries are reordered or added; a repeat gets a numeric suffix."""
    digest = hashlib.sha1(f"{media}\n{question}".encode()).hexdigest()[:10]
    base = f"{task_type}-{digest}"
    seen[base] = seen.get(base, 0) + 1
    return base if seen[base] == 1 else f"{base}-{seen[base]}"


def _resolve(media: str, media_root: Path | None, relative_paths: bool) -> str:
    """The path written into the record: absolute unless the user asked to keep paths as given."""
    if relative_paths:
        return media
    if media_root is None or os.path.isabs(media):
        return os.path.abspath(media)
    return os.path.abspath(media_root / media)


def _questions(entry: Any, source: str, where: str) -> list[dict[str, Any]]:
    """An entry's questions as a list, whether the file holds one dict or a list of them."""
    if not isinstance(entry, dict):
        raise _entry_error(source, where, f"expected an object, got {type(entry).__name__}")
    questions = entry.get("questions")
    if questions is None:
        raise _entry_error(source, where, "missing field 'questions'")
    questions = [questions] if isinstance(questions, dict) else questions
    if not isinstance(questions, list) or not all(isinstance(q, dict) for q in questions):
        raise _entry_error(source, where, "'questions' must be an object or a list of objects")
    return questions


def convert_entry(entry: Any, index: int, routing: Routing, media_root: Path | None, *,
                  source: str = "<input>", relative_paths: bool = False,
                  seen_ids: dict[str, int] | None = None) -> list[Record]:
    """The records of one HumanSense entry; errors name the source, entry index (and question index)."""
    seen_ids = {} if seen_ids is None else seen_ids
    where = f"entry {index}"
    questions = _questions(entry, source, where)
    media = next((entry[k] for k in _MEDIA_KEYS if entry.get(k)), None)
    if not isinstance(media, str):
        raise _entry_error(source, where, "missing field 'video_path'")
    path = _resolve(media, media_root, relative_paths)
    records = []
    for q_index, question in enumerate(questions):
        q_where = where if len(questions) == 1 else f"{where}, question {q_index}"
        missing = [k for k in _REQUIRED_QUESTION_KEYS if question.get(k) in (None, "")]
        if missing:
            raise _entry_error(source, q_where, f"missing field {', '.join(repr(m) for m in missing)}")
        pattern = str(question["question_pattern"]).strip()
        try:
            question_type = question_type_from_pattern(pattern)
        except ValueError:
            raise _entry_error(source, q_where, f"unknown question_pattern {pattern!r} "
                                                  f"(known: {'; '.join(PATTERN_TO_TYPE)})") from None
        options = question.get("options") or []
        if not isinstance(options, list):
            raise _entry_error(source, q_where, "'options' must be a list")
        options = [str(o).strip() for o in options]
        try:
            answer = normalize_key(question["answer"], question_type, options, strict=True)
        except ValueError as err:
            raise _entry_error(source, q_where, f"{err} for a {question_type} question") from None
        task_type = str(question["task_type"])
        modality = routing.modality(task_type)
        records.append(Record(
            id=_record_id(task_type, media, str(question["question"]), seen_ids),
            task_type=task_type,
            modality=modality,
            question=str(question["question"]).strip(),
            question_type=question_type,
            answer=answer,
            options=options,
            video=None if modality == "audio" else path,
            audio=path if modality == "audio" else None,
        ))
    return records


def convert_humansense(entries: Iterable[Any], routing: Routing | Mapping[str, str] | None = None,
                       media_root: str | Path | None = None, *, source: str = "<input>",
                       relative_paths: bool = False) -> list[Record]:
    """Turn parsed HumanSense entries into records (library entry point used by convert and validation).

    `routing` is a `Routing` or a mapping task_type -> modality merged over the default recipe; relative
    media paths resolve against `media_root` (the working directory when None) unless `relative_paths`.
    """
    if routing is None:
        routing = default_routing()
    elif not isinstance(routing, Routing):
        base = default_routing()
        routes, default = _parse_routing(dict(routing), "routing")
        base.routes.update(routes)
        routing = Routing(base.routes, default or base.default)
    root = Path(media_root) if media_root is not None else None
    seen: dict[str, int] = {}
    records: list[Record] = []
    for index, entry in enumerate(entries):
        records += convert_entry(entry, index, routing, root, source=source,
                                 relative_paths=relative_paths, seen_ids=seen)
    return records


def read_humansense(path: str | Path) -> list[Any]:
    """Parse a HumanSense JSON file: a list of entries (a single entry object is accepted too)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as err:
        raise ConvertError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ConvertError(f"{path}: expected a JSON list of entries")
    return data


def convert_file(input_path: str | Path, routing: Routing | None = None, media_root: str | Path | None = None,
                 relative_paths: bool = False) -> list[Record]:
    """Read and convert one HumanSense JSON file; relative media resolve against its folder by default."""
    input_path = Path(input_path)
    root = Path(media_root) if media_root else input_path.resolve().parent
    return convert_humansense(read_humansense(input_path), routing, root,
                              source=str(input_path), relative_paths=relative_paths)


@dataclass
class ConvertArguments:
    """Options of `hs-rl convert IN.json OUT.jsonl`."""

    input: str = field(default=None, metadata={"help": "HumanSense JSON file (training or benchmark layout)."})
    output: str = field(default=None, metadata={"help": "Records JSONL file to write."})
    routing: str | None = field(default=None, metadata={
        "help": "YAML mapping task_type -> modality (video|audio|video_audio), merged over the default recipe."})
    default_modality: str | None = field(default=None, metadata={
        "help": "Modality of task types the routing does not list (default: video)."})
    media_root: str | None = field(default=None, metadata={
        "help": "Folder that relative media paths are resolved against (default: the input file's folder)."})
    relative_paths: bool = field(default=False, metadata={
        "help": "Keep media paths as the input gives them instead of writing absolute paths."})
    allow_missing_media: bool = field(default=False, metadata={
        "help": "Write the records even when media they name do not exist (by default that is refused: a wrong "
                "--media_root would otherwise write every record pointing nowhere)."})


def missing_media(records: list[Record], root: Path) -> list[tuple[Record, str]]:
    """(record, path) for each media file a record names that does not exist; relative paths are looked up under
    `root` (where convert resolved them)."""
    missing, seen = [], {}
    for record in records:
        for media in record.media_paths():
            if media not in seen:
                seen[media] = (Path(media) if os.path.isabs(media) else root / media).is_file()
            if not seen[media]:
                missing.append((record, media))
    return missing


def run_convert(args: ConvertArguments) -> int:
    """CLI body: convert, write, print a per-modality count; 1 with a clear message on bad input."""
    if not args.input or not args.output:
        print("hs-rl convert: both an input JSON and an output JSONL are required")
        return 2
    try:
        routing = load_routing(args.routing, args.default_modality)
        records = convert_file(args.input, routing, args.media_root, args.relative_paths)
    except (ConvertError, OSError) as err:
        print(f"hs-rl convert: {err}")
        return 1
    root = Path(args.media_root) if args.media_root else Path(args.input).resolve().parent
    missing = missing_media(records, root)
    if missing:
        files = len({media for _, media in missing})
        record, media = missing[0]
        where = f"--media_root {args.media_root}" if args.media_root else f"{root} (the input's folder)"
        line = (f"hs-rl convert: {len({r.id for r, _ in missing})} of {len(records)} records name media that do not "
                f"exist under {where}: {files} file(s), e.g. {media} (record {record.id})")
        if not args.allow_missing_media:
            print(f"{line}; nothing written. Pass as --media_root the folder the JSON's video_path values are "
                  f"relative to (--allow_missing_media true writes them anyway)")
            return 1
        print(f"WARNING {line}; written anyway (--allow_missing_media): training refuses them until they exist")
    write_records(records, args.output)
    counts: dict[str, int] = {}
    for record in records:
        counts[record.modality] = counts.get(record.modality, 0) + 1
    summary = ", ".join(f"{m} {n}" for m, n in sorted(counts.items()))
    print(f"wrote {len(records)} records to {args.output} ({summary})")
    return 0
