"""Checkpoints a resume can trust: completion markers, `resume_from_checkpoint: auto`, rotation, cycle alignment.

HF's Trainer writes `checkpoint-N/` file by file, straight into place: a kill or a full disk mid-save leaves a
folder that looks like a checkpoint but is not one, and `get_last_checkpoint` would pick it. Here a checkpoint
counts only once every process has finished writing it and the main process has written (and fsynced) the
marker file `MARKER` into it, last. `auto` picks the newest marked checkpoint; rotation (`save_total_limit`) is
done by us, after the marker, and never deletes the newest complete checkpoint.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import time
from pathlib import Path
from typing import Any

from hs_rl.atomic_files import atomic_write

logger = logging.getLogger(__name__)

MARKER = "hs_rl_complete.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Every `checkpoint-N` folder of a run, complete or not, oldest step first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return sorted(found)


def is_complete(checkpoint: str | Path) -> bool:
    """True once the marker, written after every process finished the save, is there."""
    return (Path(checkpoint) / MARKER).is_file()


def newest_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The checkpoint `auto` resumes from: the highest step with a completion marker."""
    complete = [p for _, p in checkpoints(output_dir) if is_complete(p)]
    return complete[-1] if complete else None


def resolve_resume(value: Any, output_dir: str | Path) -> str | None:
    """`resume_from_checkpoint` as the Trainer takes it: auto/true → newest complete checkpoint or None."""
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in ("", "false", "none")):
        return None
    if value is True or (isinstance(value, str) and value.strip().lower() in ("auto", "true")):
        found = newest_complete_checkpoint(output_dir)
        skipped = [p.name for _, p in checkpoints(output_dir) if not is_complete(p)]
        if skipped:
            logger.warning("resume auto: ignoring incomplete checkpoint(s) %s (no %s)", skipped, MARKER)
        if found is not None:
            logger.info("resume auto: resuming from %s", found)
        return str(found) if found is not None else None
    path = Path(value)
    if not path.is_dir():
        raise FileNotFoundError(f"resume_from_checkpoint {value!r} is not a folder (use `auto` for the newest one)")
    if not is_complete(path):
        logger.warning("resume_from_checkpoint %s has no completion marker; it may be a half-written save", path)
    return str(path)


def discard_incomplete(output_dir: str | Path) -> list[Path]:
    """Remove checkpoint folders newer than the newest complete one: half saves a later save would collide with."""
    newest = newest_complete_checkpoint(output_dir)
    newest_step = -1 if newest is None else int(_CHECKPOINT.match(newest.name).group(1))
    removed = []
    for step, path in checkpoints(output_dir):
        if not is_complete(path) and step > newest_step:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        logger.warning("removed half-written checkpoint(s): %s", [p.name for p in removed])
    return removed


def rotate(output_dir: str | Path, limit: int | None, keep: str | Path | None = None,
           saved: str | Path | None = None) -> list[Path]:
    """Keep the newest `limit` complete checkpoints, `keep` (the best one) and `saved` (the one just marked);
    drop older incomplete leftovers.

    Runs after the marker is written. `saved` is never deleted, even when higher-numbered checkpoints of
    another run share the folder (a fresh run into such a folder is refused, see `refuse_foreign_checkpoints`,
    unless the user chose to overwrite them).
    """
    found = checkpoints(output_dir)
    complete = [p for _, p in found if is_complete(p)]
    if not complete:
        return []
    newest_step = int(_CHECKPOINT.match(complete[-1].name).group(1))
    doomed = [p for s, p in found if not is_complete(p) and s < newest_step]
    saved_path = Path(saved).resolve() if saved else None
    # the checkpoint just saved counts as the newest, whatever its number
    ordered = [p for p in complete if p.resolve() != saved_path] + [p for p in complete if p.resolve() == saved_path]
    if limit is not None and limit > 0:
        doomed += ordered[: max(0, len(ordered) - limit)]
    kept = {complete[-1].resolve()} | {Path(p).resolve() for p in (keep, saved) if p}
    removed = []
    for path in doomed:
        if path.resolve() in kept:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def refuse_foreign_checkpoints(output_dir: str | Path, resume: str | None, overwrite: bool) -> list[Path]:
    """A fresh run (nothing to resume) into a folder holding complete checkpoints of an earlier run is refused.

    Its first save would sit below them: rotation would weigh it against them and `auto` would later resume
    the stale newest one. With `overwrite` they are the checkpoints to delete (returned; the caller deletes
    them on the main process).
    """
    if resume is not None:
        return []
    complete = [p for _, p in checkpoints(output_dir) if is_complete(p)]
    if not complete or overwrite:
        return complete
    names = ", ".join(p.name for p in complete)
    raise FileExistsError(
        f"{output_dir} holds complete checkpoint(s) of an earlier run ({names}) and this run starts fresh "
        f"(resume_from_checkpoint: none). Choose one: continue that run with --resume_from_checkpoint auto (or "
        f"a checkpoint's path); start afresh in another --output_dir; or delete them with --overwrite_output_dir "
        f"true.")


def check_generation_cycle(config) -> None:
    """Refuse checkpoints that would fall inside a TRL generation cycle (they cannot be resumed exactly).

    TRL generates once per `steps_per_generation × num_iterations` micro-steps and keeps the completions in
    `_buffered_inputs`, which no checkpoint holds; its `_step` counter restarts at 0 on resume. A resume from
    inside a cycle would silently re-generate from the wrong slice and shift every later cycle. Saving only
    on cycle boundaries makes resume exact, so a misaligned `save_steps` is a configuration error.
    """
    cycle = int(config.steps_per_generation or config.gradient_accumulation_steps) * int(config.num_iterations)
    accumulation = int(config.gradient_accumulation_steps)
    if cycle <= 1 or str(getattr(config.save_strategy, "value", config.save_strategy)) != "steps":
        return
    save_steps = config.save_steps
    if save_steps is None or save_steps < 1 or save_steps != int(save_steps):
        raise ValueError(f"save_steps={save_steps!r}: use a whole number of steps with steps_per_generation > 1 "
                         f"(a fraction of the run cannot be kept aligned with TRL's generation cycle)")
    micro = int(save_steps) * accumulation
    if micro % cycle:
        step = cycle // _gcd(cycle, accumulation)
        raise ValueError(
            f"save_steps={int(save_steps)} would save inside a generation cycle: TRL generates every "
            f"steps_per_generation × num_iterations = {cycle} micro-steps and does not checkpoint the buffered "
            f"completions, so such a checkpoint cannot resume exactly. With gradient_accumulation_steps="
            f"{accumulation}, save_steps must be a multiple of {step}.")


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def mark_complete(trainer, trial) -> None:
    """After every rank saved `checkpoint-N`: write the marker (fsynced, last), then rotate old checkpoints.

    The Trainer's own rotation would run before anything could mark the new checkpoint, so OmniGRPOTrainer
    moves `save_total_limit` here (`checkpoint_limit`): a kill between save and marker never leaves no
    complete checkpoint behind.
    """
    run_dir = Path(trainer._get_output_dir(trial=trial))
    folder = run_dir / f"checkpoint-{trainer.state.global_step}"
    trainer.accelerator.wait_for_everyone()  # every rank's shards and RNG files are on disk
    if trainer.args.should_save:
        atomic_write(folder / MARKER, json.dumps({
            "global_step": trainer.state.global_step, "epoch": trainer.state.epoch,
            "processes": trainer.accelerator.num_processes, "time": time.time(),
        }) + "\n")
        rotate(run_dir, trainer.checkpoint_limit, trainer.state.best_model_checkpoint, saved=folder)
    trainer.accelerator.wait_for_everyone()


def loads_plain_weights(trainer, model, folder: Path) -> bool:
    """Whether a resume should load `folder`'s safetensors with `load_saved_weights` (not DeepSpeed/FSDP/PEFT)."""
    target = model if model is not None else trainer.model
    plain = not (trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled or hasattr(target, "peft_config"))
    return plain and any(Path(folder).glob("*.safetensors"))


def load_saved_weights(model, folder: Path) -> None:
    """Load a checkpoint's safetensors into `model`, mapping the saved names back to the module names.

    transformers 5 saves the Omni thinker under the names of its conversion mapping (`thinker.model.…`), but
    the Trainer's resume path loads them with a raw `load_state_dict(strict=False)`: nothing matches, nothing
    loads, only a warning is logged, and the resumed run silently trains from the base weights again.
    """
    from safetensors import safe_open
    from transformers.core_model_loading import revert_weight_conversion

    own = model.state_dict()
    saved_names = revert_weight_conversion(model, dict(own))
    by_identity = {id(tensor): name for name, tensor in own.items()}
    module_name = {saved: by_identity[id(tensor)] for saved, tensor in saved_names.items() if id(tensor) in by_identity}
    if len(module_name) != len(own):
        # not a pure renaming (an MoE thinker's experts are saved one by one and fused in memory, Qwen3-Omni):
        # let transformers' own loader apply the conversions, then copy the weights over
        _load_through_from_pretrained(model, folder)
        return
    loaded: dict[str, Any] = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(path, "pt") as handle:
            for key in handle.keys():
                if key in module_name:
                    loaded[module_name[key]] = handle.get_tensor(key)
    missing = sorted(set(own) - set(loaded))
    if missing:
        raise RuntimeError(f"checkpoint {folder} lacks {len(missing)} weight(s) of the model, e.g. {missing[:3]}")
    model.load_state_dict(loaded, strict=True)
    logger.info("loaded %d tensors from %s", len(loaded), folder)


def _load_through_from_pretrained(model, folder: Path) -> None:
    """Load `folder` with the model class's `from_pretrained` (which converts saved names and layouts) and copy
    every tensor into `model`; every weight must be found."""
    fresh, info = type(model).from_pretrained(folder, dtype=next(model.parameters()).dtype,
                                              output_loading_info=True)
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise RuntimeError(f"checkpoint {folder} lacks {len(missing)} weight(s) of the model, e.g. {missing[:3]}")
    model.load_state_dict(fresh.state_dict(), strict=True)
    logger.info("loaded %s through from_pretrained (converted weight layout)", folder)
