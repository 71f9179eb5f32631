"""Checkpoints a resume can trust: completion markers, `resume_from_checkpoint: auto`, rotation, cycle alignment.

HF's Trainer writes `checkpoint-N/` file by file, straight into place: a kill or a full disk mid-save leaves a
folder that looks like a checkpoint but is not one, and `get_last_checkpoint` would pick it. Here a checkpoint
counts only once every process has finished writing it and the main process has written (and fsynced) the
marker file `MARKER` into it, last. `auto` picks the newest marked checkpoint; rotation (`save_total_limit`) is
done by us, after the marker, and never deletes the newest complete checkpoint.

The marker also holds the settings that shaped the run (`RESUME_SETTINGS`): a resume with other values is
refused before any weight loads (`check_resume_settings`), so two runs are never silently mixed in one folder.
A resume that extends the run (a larger `max_steps` or `num_train_epochs`) continues the learning-rate schedule
as rebuilt for the new length (`continue_schedule`). A save that fills the disk ends in one line naming the
folder, its free space and a checkpoint's size (`disk_full_reported`).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import math
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hs_rl.atomic_files import atomic_write, read_json_dict
from hs_rl.errors import UserError

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


def _cycle(config) -> tuple[int, int, int]:
    """(micro-steps per TRL generation cycle, gradient accumulation, optimizer steps per whole number of cycles)."""
    cycle = int(config.steps_per_generation or config.gradient_accumulation_steps) * int(config.num_iterations)
    accumulation = int(config.gradient_accumulation_steps)
    return cycle, accumulation, cycle // math.gcd(cycle, accumulation)


def check_generation_cycle(config) -> None:
    """Refuse checkpoints that would fall inside a TRL generation cycle (they cannot be resumed exactly).

    TRL generates once per `steps_per_generation × num_iterations` micro-steps and keeps the completions in
    `_buffered_inputs`, which no checkpoint holds; its `_step` counter restarts at 0 on resume. A resume from
    inside a cycle would silently re-generate from the wrong slice and shift every later cycle. Saving only
    on cycle boundaries makes resume exact, so a misaligned `save_steps` is a configuration error, and so is a
    misaligned `max_steps`: transformers always saves when the run reaches it (whatever `save_steps` says), and
    a later run extending `max_steps` would resume from that checkpoint.
    """
    cycle, accumulation, step = _cycle(config)
    strategy = str(getattr(config.save_strategy, "value", config.save_strategy))
    if cycle <= 1 or strategy == "no":
        return
    why = (f"TRL generates every steps_per_generation × num_iterations = {cycle} micro-steps and does not "
           f"checkpoint the buffered completions, so such a checkpoint cannot resume exactly")
    if config.max_steps is not None and config.max_steps > 0 and (int(config.max_steps) * accumulation) % cycle:
        raise UserError(
            f"max_steps={int(config.max_steps)} would end the run inside a generation cycle, where transformers saves "
            f"its last checkpoint: {why}. With gradient_accumulation_steps={accumulation}, max_steps must be a "
            f"multiple of {step} (e.g. {_round_up(int(config.max_steps), step)}).")
    if strategy != "steps":
        return
    save_steps = config.save_steps
    if save_steps is None or save_steps < 1 or save_steps != int(save_steps):
        raise UserError(f"save_steps={save_steps!r}: use a whole number of steps with steps_per_generation > 1 "
                         f"(a fraction of the run cannot be kept aligned with TRL's generation cycle)")
    micro = int(save_steps) * accumulation
    if micro % cycle:
        raise UserError(
            f"save_steps={int(save_steps)} would save inside a generation cycle: {why}. With "
            f"gradient_accumulation_steps={accumulation}, save_steps must be a multiple of {step}.")


def check_resume_cycle(checkpoint: str | Path | None, config) -> None:
    """Refuse, before anything loads, to resume from a checkpoint that ends inside a generation cycle.

    Earlier versions let transformers' end-of-run save fall inside a cycle (a `max_steps` that is no multiple of
    the cycle); extending such a run from it would train on the wrong generation batch. Resuming from it only
    to finish an export (no step left) is harmless and allowed.
    """
    if checkpoint is None:
        return
    cycle, accumulation, step = _cycle(config)
    done = checkpoint_step(checkpoint)
    if cycle <= 1 or done is None or (done * accumulation) % cycle == 0:
        return
    if config.max_steps is not None and 0 < int(config.max_steps) <= done:
        return
    folder = Path(checkpoint).parent
    earlier = [p for s, p in checkpoints(folder) if s < done and is_complete(p) and (s * accumulation) % cycle == 0]
    resume_from = (f"resume from {earlier[-1].name} (--resume_from_checkpoint {earlier[-1]}) with a max_steps "
                   f"that is a multiple of {step}, or " if earlier else "")
    raise UserError(
        f"{checkpoint} ends at step {done}, inside a generation cycle (steps_per_generation × num_iterations = "
        f"{cycle} micro-steps, gradient_accumulation_steps={accumulation}: a cycle ends every {step} steps), so it "
        f"cannot be resumed exactly: {resume_from}{START_AFRESH}.")


START_AFRESH = ("start afresh: --resume_from_checkpoint none into another --output_dir, or here with "
                "--resume_from_checkpoint none --overwrite_output_dir true (deletes this folder's checkpoints)")


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def checkpoint_step(checkpoint: str | Path) -> int | None:
    """The global step a `checkpoint-N` folder was saved at (its marker's, else its name's)."""
    marker = read_marker(checkpoint)
    if marker and isinstance(marker.get("global_step"), int):
        return marker["global_step"]
    match = _CHECKPOINT.match(Path(checkpoint).name)
    return int(match.group(1)) if match else None


def read_marker(checkpoint: str | Path) -> dict[str, Any] | None:
    """The completion marker's contents, or None (no marker, or unreadable)."""
    return read_json_dict(Path(checkpoint) / MARKER)


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
            SETTINGS_KEY: getattr(trainer, "resume_settings", None),  # check_resume_settings compares them
        }) + "\n")
        rotate(run_dir, trainer.checkpoint_limit, trainer.state.best_model_checkpoint, saved=folder)
    trainer.accelerator.wait_for_everyone()


# ---- the settings a resume must share with its checkpoint -----------------------------------------------------
SETTINGS_KEY = "settings"

# The one list of settings that shape what a run learns, each an option name of DataArguments, OmniGRPOConfig or
# OmniModelConfig, plus `dataset_sha256` (the dataset file's content) and `num_processes` (the global batch and
# the data order follow it). A resume whose value of any of them differs from its checkpoint's is refused
# (`check_resume_settings`). Not listed, so free to change on resume: the run's length (max_steps,
# num_train_epochs), when to save, log and evaluate, where to write, dataloader workers, gradient checkpointing,
# shared_prefix and run_all_towers (exact: they change memory and speed, not the numbers).
RESUME_SETTINGS: tuple[str, ...] = (
    # the model and what of it trains
    "model_name_or_path", "dtype", "bf16", "fp16", "freeze_vision_encoder", "freeze_audio_encoder", "freeze_experts",
    "use_peft", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_target_parameters",
    "use_rslora", "use_dora",
    # the data and the prompts made from it
    "dataset_sha256", "replay", "skip_invalid", "system_prompt", "think", "prompt_source", "max_prompt_length",
    "over_long_prompts", "video_fps", "video_min_frames", "video_max_frames", "video_min_pixels",
    "video_max_pixels", "video_total_pixels",
    # optimizer and learning-rate schedule
    "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps", "weight_decay", "adam_beta1",
    "adam_beta2", "adam_epsilon", "optim", "optim_args", "max_grad_norm",
    # batch and data order
    "per_device_train_batch_size", "gradient_accumulation_steps", "steps_per_generation", "num_iterations",
    "num_processes", "seed", "data_seed", "shuffle_dataset",
    # the GRPO objective
    "reward_funcs", "reward_weights", "reward_kwargs", "reward_errors", "scale_rewards",
    "multi_objective_aggregation", "beta", "loss_type", "epsilon", "epsilon_high", "delta",
    "importance_sampling_level", "mask_truncated_completions", "top_entropy_quantile", "router_aux_loss_coef",
    "ref_model_name_or_path", "sync_ref_model", "ref_model_sync_steps", "ref_model_mixup_alpha",
    # generation
    "num_generations", "max_completion_length", "temperature", "top_p", "top_k", "min_p", "repetition_penalty",
    "generation_kwargs",
)
_PATHS = ("model_name_or_path", "ref_model_name_or_path", "prompt_source")  # compared as absolute paths


def _plain(value: Any) -> Any:
    """`value` as JSON holds it (enums by value, tuples as lists), so a saved and a fresh value compare equal."""
    value = getattr(value, "value", value)
    return json.loads(json.dumps(value, default=str))


def file_sha256(path: str | Path | None) -> str | None:
    """The SHA-256 of a file's bytes, or None when there is no such file."""
    if not path or not Path(path).is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def training_settings(data_args, config, model_args, num_processes: int) -> dict[str, Any]:
    """This run's value of every `RESUME_SETTINGS` name (saved in each checkpoint's marker)."""
    settings: dict[str, Any] = {"dataset_sha256": file_sha256(data_args.dataset), "num_processes": num_processes}
    for name in RESUME_SETTINGS:
        if name in settings:
            continue
        for source in (config, model_args, data_args):
            if hasattr(source, name):
                value = getattr(source, name)
                if name in _PATHS and value:
                    value = str(Path(value).resolve())
                settings[name] = _plain(value)
                break
    return settings


def _shown(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_resume_settings(checkpoint: str | Path | None, current: dict[str, Any]) -> None:
    """Refuse to resume from `checkpoint` with settings (`RESUME_SETTINGS`) other than those it was trained with,
    naming each difference (old → new) and the two ways on; a checkpoint written before hs-rl saved its settings
    resumes with a warning that nothing was compared."""
    if checkpoint is None:
        return
    marker = read_marker(checkpoint)
    if marker is None:
        return  # no marker: resolve_resume already warned that it may be a half-written save
    saved = marker.get(SETTINGS_KEY)
    if not isinstance(saved, dict):
        logger.warning("resume: %s was saved before hs-rl recorded a run's settings in its checkpoints; this "
                       "run's settings were not compared with the ones it was trained with", checkpoint)
        return
    changed = [(name, saved[name], current.get(name)) for name in RESUME_SETTINGS
               if name in saved and saved[name] != current.get(name)]
    if not changed:
        return
    shown = "; ".join("dataset: the file's content changed (sha256 "
                      f"{str(old)[:12]}… → {str(new)[:12] + '…' if new else 'no file'})" if name == "dataset_sha256"
                      else f"{name}: {_shown(old)} → {_shown(new)}" for name, old, new in changed)
    raise UserError(
        f"{checkpoint} was trained with other settings than this run's ({shown}). Resuming would mix two runs: "
        f"either resume with the checkpoint's settings (drop those changes; max_steps and num_train_epochs may "
        f"grow), or {START_AFRESH}.")


# ---- resuming a longer run: the learning-rate schedule ----------------------------------------------------------
def continue_schedule(scheduler) -> bool:
    """After a resume loaded the optimizer and scheduler: give each parameter group the learning rate the run's
    schedule has at the resumed step. Returns whether it applied (a LambdaLR, as every schedule of
    transformers' `get_scheduler` but reduce_lr_on_plateau is).

    Why: the Trainer builds the schedule for this run's `max_steps`, then loads the checkpoint's scheduler state
    (its step count) and the optimizer state, whose saved learning rate is the one the old schedule had reached.
    When the run is extended (max_steps 2 → 3 with a linear decay: that rate is 0), the first new step would
    train at it. The schedule's function is the new run's (LambdaLR saves no plain-function lambdas), so
    evaluating it at the resumed step continues the schedule as rebuilt for the new length: a linear decay
    goes on from where the longer run's line is at that step. For a resume of the same length this is the rate
    the optimizer already holds.
    """
    from torch.optim.lr_scheduler import LambdaLR

    scheduler = getattr(scheduler, "scheduler", scheduler)  # accelerate's AcceleratedScheduler wraps it
    if not isinstance(scheduler, LambdaLR):
        return False
    rates = [base * rule(scheduler.last_epoch) for base, rule in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    held = [group["lr"] for group in scheduler.optimizer.param_groups]
    for group, rate in zip(scheduler.optimizer.param_groups, rates):
        group["lr"] = rate
    scheduler._last_lr = rates
    if rates != held:  # the run is longer (or shorter) than the one that saved the checkpoint
        logger.info("resume: the learning-rate schedule, rebuilt for this run's length, continues at %.3g at step "
                    "%d (the checkpoint's optimizer held %.3g)", rates[0], scheduler.last_epoch, held[0])
    return True


# ---- completions.jsonl on resume --------------------------------------------------------------------------------
def trim_completions_log(path: str | Path, step: int) -> int:
    """Drop the lines of steps after `step` (the resumed checkpoint's; 0 for a fresh start) from a completions
    log: the steps a resume trains again would otherwise be in it twice. Returns how many lines went."""
    path = Path(path)
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                row = json.loads(line)
                keep = isinstance(row, dict) and int(row.get("step", 0)) <= step
            except (ValueError, TypeError):  # a line cut short by a kill
                keep = False
            if keep:
                kept.append(line if line.endswith("\n") else line + "\n")
            else:
                dropped += 1
    if dropped:
        atomic_write(path, kept)
        logger.info("completions log: dropped %d line(s) of steps after %d (trained again now)", dropped, step)
    return dropped


# ---- a full disk while saving -----------------------------------------------------------------------------------
class DiskFullError(OSError):
    """A checkpoint could not be written for lack of space (one line: folder, free space, size needed)."""


_DISK_FULL_SIGNS = ("no space left", "iostream error", "inline_container", "unexpected pos", "file write failed",
                    "os error 28", "disk quota")


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _format_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if count < 1024 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TB"


def checkpoint_size_estimate(trainer, run_dir: Path) -> tuple[int, str]:
    """Bytes a checkpoint takes, and how that was found: the newest complete checkpoint's size on disk, else the
    model's weights plus the optimizer's states (all processes)."""
    newest = newest_complete_checkpoint(run_dir)
    if newest is not None:
        return _folder_size(newest), f"the size of {newest.name}"
    model = trainer.accelerator.unwrap_model(trainer.model)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    states = 0
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    for state in getattr(optimizer, "state", {}).values():
        states += sum(v.numel() * v.element_size() for v in state.values() if hasattr(v, "numel"))
    return weights + states * trainer.accelerator.num_processes, "estimate: weights + optimizer states"


def _looks_like_full_disk(error: BaseException, free: int, needed: int) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(sign in str(seen).lower() for sign in _DISK_FULL_SIGNS) and free < needed:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextlib.contextmanager
def disk_full_reported(trainer, trial) -> Iterator[None]:
    """Around the Trainer's checkpoint save: a save that fails for lack of space (an ENOSPC OSError, or the
    RuntimeError torch's zip writer turns it into, "basic_ios::clear: iostream error" / "[enforce fail at
    inline_container.cc]") becomes a `DiskFullError` naming the folder, its free space and a checkpoint's size.
    The half-written folder has no completion marker, so the newest complete checkpoint stays the resume point."""
    try:
        yield
    except Exception as error:
        run_dir = Path(trainer._get_output_dir(trial=trial))
        try:
            free = shutil.disk_usage(run_dir).free
            needed, how = checkpoint_size_estimate(trainer, run_dir)
        except Exception:  # reporting must never hide the original error
            raise error from None
        if not _looks_like_full_disk(error, free, needed):
            raise
        newest = newest_complete_checkpoint(run_dir)
        raise DiskFullError(
            errno.ENOSPC,
            f"the disk of {run_dir} is full: saving checkpoint-{trainer.state.global_step} failed with "
            f"{_format_bytes(free)} free there, and a checkpoint needs about {_format_bytes(needed)} ({how}). "
            f"Free space there (or set another --output_dir), then run the same command again: it resumes from "
            f"{newest.name if newest else 'the start'}") from error


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
    foreign = False  # a saved name this release does not write
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(path, "pt") as handle:
            for key in handle.keys():
                if key in module_name:
                    loaded[module_name[key]] = handle.get_tensor(key)
                else:
                    foreign = True
    if set(loaded) != set(own) and foreign:
        # saved under other names than this release writes (a checkpoint of another transformers release: 5.20
        # saves a Qwen2.5-Omni thinker as `audio_tower.…`, 5.23 as `thinker.audio_tower.…`): transformers' own
        # loader knows both; it still refuses a checkpoint that lacks a weight
        _load_through_from_pretrained(model, folder)
        return
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
