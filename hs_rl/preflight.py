"""Everything a stage can check before it loads a weight, as one list of problems.

`hs-rl train` runs it at start (`check_stage`) and `hs-rl pipeline` runs it for every stage before stage 1's first
step (`stage_problems`), so that a typo in stage 3 costs seconds, not the hours stages 1 and 2 train. It calls the
checks the stage's own code uses (the model folder, hs_rl.data.validation for records and media, the reward specs,
TRL's generation cycle, the benchmark templates) and adds what the stage trains on: its record counts by modality,
against `expect_modalities` or, without it, the modality the stage's name says (stage1_video: video).
"""
from __future__ import annotations

import difflib
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hs_rl.data.records import MODALITIES, Record
from hs_rl.errors import UserError

logger = logging.getLogger(__name__)

SKIP_INVALID_HINT = ("fix those records, or set skip_invalid: true to drop them (listed in "
                     "OUTPUT_DIR/dropped_records.jsonl)")


@dataclass
class StageCheck:
    """What a check found: problems (the stage cannot start), warnings, and the records by modality."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    records: list[Record] | None = None

    def summary(self, dataset: str) -> str:
        """`data/train/stage1_video.jsonl: 2660 records (video 2660)`."""
        parts = ", ".join(f"{m} {n}" for m, n in sorted(self.counts.items()))
        return f"{dataset}: {sum(self.counts.values())} records ({parts or 'none'})"


def modality_named(name: str) -> str | None:
    """The modality a stage's name says it trains: `stage3_video_audio` video_audio, `stage2_audio` audio, …"""
    words = set(re.split(r"[^a-z0-9]+|_", name.lower()))
    if "video" in words and "audio" in words:
        return "video_audio"
    for modality in ("audio", "video"):
        if modality in words:
            return modality
    return None


def expected_modalities(data_args, names: list[str]) -> tuple[set[str], str] | None:
    """(modalities, what says so): `expect_modalities`, else the first of `names` that names a modality."""
    if data_args.expect_modalities:
        return set(data_args.expect_modalities), f"expect_modalities {list(data_args.expect_modalities)}"
    for name in names:
        modality = modality_named(name)
        if modality:
            return {modality}, f"its name {name!r}"
    return None


def modality_problems(data_args, counts: dict[str, int], names: list[str]) -> tuple[list[str], list[str]]:
    """(problems, warnings) about records of modalities the stage does not say it trains."""
    unknown = [m for m in data_args.expect_modalities or [] if m not in MODALITIES]
    if unknown:
        close = difflib.get_close_matches(unknown[0], MODALITIES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return [f"expect_modalities: unknown modality {unknown[0]!r} (one of {', '.join(MODALITIES)}){hint}"], []
    expected = expected_modalities(data_args, names)
    if expected is None:
        return [], []
    wanted, source = expected
    others = {m: n for m, n in counts.items() if m not in wanted}
    if not others:
        return [], []
    held = ", ".join(f"{n} {m}" for m, n in sorted(others.items()))
    line = (f"dataset {data_args.dataset}: {held} record(s) of {sum(counts.values())}, but {source} says this stage "
            f"trains {', '.join(sorted(wanted))}")
    if data_args.modality_mismatch == "error":
        return [f"{line} (modality_mismatch: error); use that stage's data, or list every modality meant in "
                f"expect_modalities"], []
    return [], [f"{line}; if that is meant, list them in expect_modalities (modality_mismatch: error refuses it)"]


def stage_problems(data_args, config, model_args, *, model_ready: bool = True,
                   names: list[str] | None = None) -> StageCheck:
    """Every problem a stage would stop at before (or while) loading weights, none raised.

    `model_ready` False: the input model is an earlier stage's output that does not exist yet (not checked).
    `names`: what the stage is called (the pipeline's stage name, the output folder's name), for the modality check.
    """
    from hs_rl.data.validation import filter_valid, validate_file
    from hs_rl.grpo.checkpoints import check_generation_cycle
    from hs_rl.omni.loading import check_model_dir, check_model_modalities

    check = StageCheck()
    model = model_args.model_name_or_path
    if model_ready:
        try:
            check_model_dir(model or "")
        except (OSError, ValueError) as err:
            check.problems.append(f"{err} (model_name_or_path)")
            model_ready = False
    if config.use_vllm:  # vLLM importable, colocate mode, a model it serves, room for the prompts
        from hs_rl.grpo.vllm_rollouts import config_problems

        check.problems += config_problems(config, model if model_ready else None, data_args.max_prompt_length)
    try:
        check_generation_cycle(config)
    except ValueError as err:
        check.problems.append(str(err))
    check.problems += _reward_problems(config)
    check.records = _records(data_args, check, validate_file, filter_valid)
    if check.records is not None:
        check.counts = dict(Counter(r.modality for r in check.records))
        problems, warnings = modality_problems(data_args, check.counts, names or [Path(config.output_dir).name])
        check.problems += problems
        check.warnings += warnings
        if data_args.prompt_source:
            from hs_rl.data.prompts import check_prompt_source

            try:
                check_prompt_source(check.records, data_args.prompt_source, data_args.think)
            except ValueError as err:
                check.problems.append(str(err))
        if model_ready:
            try:
                check_model_modalities(model, set(check.counts))
            except ValueError as err:
                check.problems.append(str(err))
    return check


def _reward_problems(config) -> list[str]:
    """The reward specs resolve (a user's file or module is imported here, as the stage does)."""
    from hs_rl.rewards import get_rewards

    try:
        get_rewards(config.reward_funcs, settings=config.reward_kwargs)
    except (ValueError, TypeError, AttributeError, ImportError, OSError) as err:
        return [str(err)]
    return []


def _records(data_args, check: StageCheck, validate_file, filter_valid) -> list[Record] | None:
    """The stage's records as the stage will read them (validated, cached; skip_invalid drops the bad ones)."""
    dataset = data_args.dataset
    if not dataset:
        check.problems.append("no dataset: set `dataset:` in the stage YAML or pass --dataset FILE.jsonl")
        return None
    if not Path(dataset).is_file():
        check.problems.append(f"dataset {dataset!r} does not exist (`dataset:` in the stage YAML or --dataset)")
        return None
    if not data_args.validate_data:
        from hs_rl.data.records import load_records

        try:
            return load_records(dataset)
        except ValueError as err:
            check.problems.append(str(err))
            return None
    report = validate_file(dataset, use_cache=True)
    if report.ok:
        return report.records
    if data_args.skip_invalid:
        kept, dropped = filter_valid(report)
        check.warnings.append(f"skip_invalid: {len(dropped)} problem(s) in {dataset}; those records will be dropped")
        return kept
    check.problems += [problem.format() for problem in report.problems]
    check.hints.append(SKIP_INVALID_HINT)
    return report.records


def check_stage(data_args, config, model_args, is_main: bool = True) -> StageCheck:
    """A stage's start: log its records by modality and any warning (main process), or raise every problem."""
    check = stage_problems(data_args, config, model_args)
    if is_main and check.records is not None:
        logger.info("%s", check.summary(data_args.dataset))
    if is_main:
        for warning in check.warnings:
            logger.warning("%s", warning)
    if check.problems:
        raise UserError(check.problems, hint="; ".join(check.hints) or None)
    return check
