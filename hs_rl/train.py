"""`hs-rl train STAGE.yaml [--option value …]`: one GRPO stage, from a stage YAML with TRL-style overrides.

Also runnable as ``accelerate launch -m hs_rl.train STAGE.yaml``. Everything that can be checked is checked
before a weight is loaded: the model folder, the dataset and its media (validated, cached), the batch
arithmetic, the reward specs.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path

from hs_rl.data.arguments import DataArguments
from hs_rl.grpo.config import OmniGRPOConfig, OmniModelConfig

logger = logging.getLogger(__name__)

__all__ = ["DataArguments", "OmniGRPOConfig", "OmniModelConfig", "run_train", "train_command", "main"]


def load_training_records(data_args: DataArguments, output_dir: Path, is_main: bool):
    """Validated records of the stage's dataset; invalid ones stop the run unless `skip_invalid`."""
    if not data_args.dataset:
        raise ValueError("no dataset: set `dataset:` in the stage YAML or pass --dataset FILE.jsonl")
    if not Path(data_args.dataset).is_file():
        raise FileNotFoundError(f"dataset {data_args.dataset!r} does not exist")
    return _validated_records(data_args.dataset, data_args, output_dir / "dropped_records.jsonl", is_main)


def _validated_records(path: str, data_args: DataArguments, dropped_file: Path, is_main: bool):
    """A records file read as the stage reads its dataset: validated (cached) unless `validate_data` is off."""
    from hs_rl.data.validation import filter_valid, validate_file, write_dropped

    report = validate_file(path, use_cache=True) if data_args.validate_data else None
    if report is None:
        from hs_rl.data.records import load_records

        return load_records(path)
    if report.ok:
        return report.records
    if not data_args.skip_invalid:
        raise ValueError(f"{len(report.problems)} problem(s) in the training data ({path}); fix them or set "
                         f"skip_invalid: true to drop those records:\n{report.format()}")
    kept, dropped = filter_valid(report)
    if is_main:
        write_dropped(dropped, dropped_file)
    logger.warning("skip_invalid: dropped %d record(s) of %s, listed in %s", len(dropped), path, dropped_file)
    return kept


def load_replay_records(data_args: DataArguments, own_count: int, seed: int, output_dir: Path, is_main: bool):
    """(records, draws) of `replay` (hs_rl.data.replay): each source validated like the stage's dataset, drawn
    from the run's seed (the same list on every rank and on resume), logged."""
    from hs_rl.data.replay import describe_draws, draw_replay, parse_replay

    replay = parse_replay(data_args.replay)
    if not replay:
        return [], []
    sources = list(replay)
    records, draws = draw_replay(own_count, replay, seed, lambda source: _validated_records(
        source, data_args, output_dir / f"dropped_records.replay{sources.index(source)}.jsonl", is_main))
    if is_main:
        logger.info("%s", describe_draws(draws, own_count))
    return records, draws


def load_probe_records(data_args: DataArguments, output_dir: Path, is_main: bool):
    """{name: validated records} of `probe_datasets` (hs_rl.data.probes); {} without."""
    from hs_rl.data.probes import parse_probe_datasets

    probes = parse_probe_datasets(data_args.probe_datasets) or {}
    return {name: _validated_records(path, data_args, output_dir / f"dropped_records.probe_{name}.jsonl", is_main)
            for name, path in probes.items()}


def check_same_records_on_every_process(config, records: list, probes: dict[str, list]) -> None:
    """Every process validated the data on its own: with `skip_invalid`, media that differ between nodes (node-local
    copies) or change during start-up would give processes different record lists, hence different step counts
    (a hang at the end) or silently different data. Compare a digest of the ids in order, collectively."""
    if config.world_size <= 1:  # (this also sets up the run's process group, as the trainer will)
        return
    import hashlib

    from accelerate.utils import gather_object

    from hs_rl.errors import UserError

    digest = hashlib.sha256("\n".join(
        [r.id for r in records] + [f"{name}:{r.id}" for name, rows in sorted(probes.items()) for r in rows]
    ).encode()).hexdigest()
    digests = gather_object([(len(records), digest)])
    if len(set(digests)) > 1:
        counts = ", ".join(f"process {rank}: {count}" for rank, (count, _) in enumerate(digests))
        raise UserError(f"the processes read different training records ({counts}): each validates the data on "
                        "its own, so the media must be the same files on every node; run `hs-rl validate-data` on "
                        "each node, or fix the files and drop skip_invalid")


def build_trainer(data_args: DataArguments, config: OmniGRPOConfig, model_args: OmniModelConfig):
    """Every object of a stage, checked in order of cost: paths, data, rewards, then weights."""
    from accelerate import PartialState

    from hs_rl.data.dataset import build_train_dataset
    from hs_rl.data.prompts import check_prompt_source
    from hs_rl.grpo.checkpoints import check_generation_cycle, training_settings
    from hs_rl.grpo.trainer import OmniGRPOTrainer
    from hs_rl.omni.loading import (
        check_model_dir,
        check_model_modalities,
        freeze_encoders,
        freeze_experts,
        load_processor,
        load_thinker,
        lora_target_modules,
    )
    from hs_rl.rewards import get_rewards
    from hs_rl.rewards.guard import guard_reward

    state = PartialState()
    output_dir = Path(config.output_dir)
    check_model_dir(model_args.model_name_or_path or "")
    check_generation_cycle(config)
    row_args = data_args  # how rows are built; the stage's settings (checkpoints compare them) stay data_args
    if config.use_vllm:  # vLLM importable, colocate mode, a model it serves: before any data or weights load
        from dataclasses import replace

        from hs_rl.errors import UserError
        from hs_rl.grpo.vllm_rollouts import config_problems, prompt_limit

        problems = config_problems(config, model_args.model_name_or_path, data_args.max_prompt_length)
        if problems:
            raise UserError(problems)
        if data_args.max_prompt_length is None:  # a longer prompt is refused (or skipped) as over-long ones are
            row_args = replace(data_args, max_prompt_length=prompt_limit(config, model_args.model_name_or_path))
            logger.info("use_vllm: prompts over %d tokens are over-long (vllm_max_model_length minus "
                        "max_completion_length)", row_args.max_prompt_length)
    records = load_training_records(data_args, output_dir, state.is_main_process)
    replayed, draws = load_replay_records(data_args, len(records), config.seed, output_dir, state.is_main_process)
    probes = load_probe_records(data_args, output_dir, state.is_main_process)
    if probes and getattr(config.eval_strategy, "value", config.eval_strategy) == "no":
        raise ValueError(f"probe_datasets {sorted(probes)}: set eval_strategy: steps and eval_steps: N to measure "
                         f"them every N steps (eval_strategy is 'no')")
    everything = records + replayed + [r for probe in probes.values() for r in probe]
    check_same_records_on_every_process(config, records + replayed, probes)
    check_prompt_source(everything, data_args.prompt_source, data_args.think)
    check_model_modalities(model_args.model_name_or_path, {r.modality for r in everything})
    reward_counter: dict[str, int] = {}
    rewards = [guard_reward(fn, config.reward_errors, reward_counter)
               for fn in get_rewards(config.reward_funcs, settings=config.reward_kwargs)]
    if config.reward_weights is not None and len(config.reward_weights) != len(rewards):
        raise ValueError(f"reward_weights has {len(config.reward_weights)} entries for {len(rewards)} rewards")

    if config.deepspeed or os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        from hs_rl.grpo.safe_loading import allow_listed_deepspeed_loading

        allow_listed_deepspeed_loading()
    processor = load_processor(model_args.model_name_or_path)
    model = load_thinker(model_args.model_name_or_path, model_args.dtype, model_args.attn_implementation)
    freeze_encoders(model, vision=config.freeze_vision_encoder, audio=config.freeze_audio_encoder)
    if config.freeze_experts:
        logger.info("freeze_experts: %d expert weight tensors frozen", freeze_experts(model))
    # use_vllm: the rows keep the frames and wave they were decoded to, which the engine's own processor takes
    dataset = build_train_dataset(records + replayed, processor, row_args, keep_decoded=config.use_vllm)
    # the probes go through the same row builder: TRL's evaluation loop hands their rows, media included, to the
    # same hooks as a training batch's (OmniGRPOTrainer._get_eval_sampler keeps to their media rows)
    eval_dataset = {name: build_train_dataset(probe, processor, row_args, keep_decoded=config.use_vllm)
                    for name, probe in probes.items()} or None
    peft_config = None
    if model_args.use_peft:
        from trl import get_peft_config

        peft_config = get_peft_config(model_args)
        default = peft_config.target_modules is None and getattr(peft_config, "target_parameters", None) is None
        if default or isinstance(peft_config.target_modules, (list, set)):
            # peft has no default for an Omni thinker: the family's (hs_rl.omni.families, `lora_targets`). Module
            # names like q_proj also exist in the encoders: with frozen encoders, adapt the LM only
            peft_config.target_modules = lora_target_modules(
                model, None if default else sorted(peft_config.target_modules),
                language_model_only=config.freeze_vision_encoder and config.freeze_audio_encoder)
    trainer = OmniGRPOTrainer(
        model=model, reward_funcs=rewards, args=config, train_dataset=dataset, eval_dataset=eval_dataset,
        processing_class=processor, peft_config=peft_config,
        encoders_frozen=config.freeze_vision_encoder and config.freeze_audio_encoder,
        run_all_towers=config.run_all_towers,
        completions_log=output_dir / "completions.jsonl" if config.completions_log else None,
    )
    trainer.reward_error_counts = reward_counter  # filled by the guarded rewards, logged by the trainer
    if draws or probes:  # in progress.json, for `hs-rl status`
        from hs_rl.grpo.progress_recorder import ProgressRecorder

        for callback in trainer.callback_handler.callbacks:
            if isinstance(callback, ProgressRecorder):
                callback.info.update({"records": len(records), "replay": [d.to_dict() for d in draws]} if draws
                                     else {})
                callback.info.update({"probes": {name: len(probe) for name, probe in probes.items()}} if probes
                                     else {})
    # saved in every checkpoint's completion marker; a resume with other values is refused (check_resume_settings)
    trainer.resume_settings = training_settings(data_args, config, model_args, state.num_processes)
    return trainer


def _without_zero3_loading():
    """A context in which `from_pretrained` loads a whole model on this rank alone.

    Under ZeRO-3 (accelerate registers its DeepSpeed config with transformers) every `from_pretrained` builds
    the model inside `deepspeed.zero.Init`, which partitions and broadcasts each parameter across all ranks: a
    load on the main process only (the export check) waits forever for the others. Off ZeRO-3: no-op.
    """
    import contextlib

    from transformers.integrations import deepspeed as hf_deepspeed

    @contextlib.contextmanager
    def context():
        saved = hf_deepspeed._hf_deepspeed_config_weak_ref
        hf_deepspeed._hf_deepspeed_config_weak_ref = None
        try:
            yield
        finally:
            hf_deepspeed._hf_deepspeed_config_weak_ref = saved

    return context()


def run_train(data_args: DataArguments, config: OmniGRPOConfig, model_args: OmniModelConfig) -> int:
    """Train one stage and export its final model to `OUTPUT_DIR/final` (full Omni when the input was full).

    `resume_from_checkpoint: auto` resumes from the newest complete checkpoint (see hs_rl.grpo.checkpoints), once
    this run's settings are those it was trained with. Ctrl-C ends the run with one line (exit code 130; status
    `interrupted`), a full disk while saving with one line naming the folder, its free space and a checkpoint's
    size (exit code 1): the same command then resumes from the newest complete checkpoint.
    """
    from hs_rl.grpo.checkpoints import DiskFullError, newest_complete_checkpoint

    trainer = None
    try:
        resume = _prepare_resume(data_args, config, model_args)
        trainer = build_trainer(data_args, config, model_args)
        # Always through the Trainer, even from the run's last checkpoint: it loads the weights (and under
        # DeepSpeed prepares the engine and loads its shards) exactly as for a resume; OmniGRPOTrainer._run_epoch
        # then trains nothing when no step is left, so a re-run only completes the export.
        trainer.train(resume_from_checkpoint=resume)
        _finish(trainer, config, model_args)
    except KeyboardInterrupt:
        newest = newest_complete_checkpoint(config.output_dir)
        _record_end(trainer, "interrupted", "interrupted (Ctrl-C)")
        if _is_main_process():
            print(f"hs-rl train: interrupted (Ctrl-C){_at_step(trainer)}; run the same command again to resume from "
                  f"{newest or 'the start'}", file=sys.stderr)
        return 130
    except DiskFullError as error:
        _record_end(trainer, "failed", error.strerror)
        raise SystemExit(f"hs-rl train: {error.strerror}") from None
    return 0


def _is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def _at_step(trainer) -> str:
    return "" if trainer is None else f" after step {trainer.state.global_step} of {trainer.state.max_steps}"


def _record_end(trainer, state: str, error: str) -> None:
    """Say in progress.json how the run ended (`hs-rl status` reads it), when training had begun."""
    from hs_rl.grpo.progress_recorder import ProgressRecorder

    for callback in trainer.callback_handler.callbacks if trainer is not None else ():
        if isinstance(callback, ProgressRecorder):
            callback.end(state, error)


def _prepare_resume(data_args: DataArguments, config: OmniGRPOConfig, model_args: OmniModelConfig) -> str | None:
    """The checkpoint to resume from (None: a fresh start), refused unless it was trained with this run's settings
    and ends on a generation-cycle boundary; then the folder is tidied for the run (main process)."""
    from accelerate import PartialState

    from hs_rl.grpo.checkpoints import (
        check_resume_cycle,
        check_resume_settings,
        checkpoint_step,
        discard_incomplete,
        refuse_foreign_checkpoints,
        resolve_resume,
        training_settings,
        trim_completions_log,
    )

    output_dir = Path(config.output_dir)
    state = PartialState()
    resume = resolve_resume(config.resume_from_checkpoint, output_dir)
    # before anything is deleted or loaded: the checkpoint must have been trained with this run's settings
    check_resume_settings(resume, training_settings(data_args, config, model_args, state.num_processes))
    check_resume_cycle(resume, config)
    stale = refuse_foreign_checkpoints(output_dir, resume, config.overwrite_output_dir)
    if state.is_main_process:
        if str(config.resume_from_checkpoint).lower() in ("auto", "true"):
            discard_incomplete(output_dir)
        for path in stale:  # overwrite_output_dir: the earlier run's checkpoints go
            logger.warning("overwrite_output_dir: deleting %s of an earlier run", path)
            shutil.rmtree(path)
        if config.completions_log:  # the steps trained again (all, on a fresh start) must not be in it twice
            trim_completions_log(output_dir / "completions.jsonl", (checkpoint_step(resume) or 0) if resume else 0)
    state.wait_for_everyone()
    return resume


def _finish(trainer, config: OmniGRPOConfig, model_args: OmniModelConfig) -> None:
    """Export the trained stage to OUTPUT_DIR/final and write its summary (every rank takes part)."""
    from hs_rl.omni.export import ADAPTER_DIR, FINAL_DIR, export_model, keep_adapter, merge_adapter

    output_dir = Path(config.output_dir)
    thinker_dir = output_dir / ".final-thinker"
    adapter_dir = output_dir / ".final-adapter"
    lora = hasattr(trainer.accelerator.unwrap_model(trainer.model), "peft_config")
    # collective under DeepSpeed: every rank takes part. A PEFT model saves its adapter only.
    trainer.save_model(str(adapter_dir if lora else thinker_dir))
    if trainer.accelerator.is_main_process:
        with _without_zero3_loading():  # merge and export load models on this rank alone
            if lora:  # adapters merged into the stage's input thinker: final/ is a plain Omni model
                merge_adapter(model_args.model_name_or_path, adapter_dir, thinker_dir, model_args.dtype)
            trainer.processing_class.save_pretrained(str(thinker_dir))
            export_model(thinker_dir, model_args.model_name_or_path, output_dir / FINAL_DIR)
        if lora and config.keep_adapter:
            keep_adapter(adapter_dir, output_dir / ADAPTER_DIR)
        shutil.rmtree(thinker_dir, ignore_errors=True)
        shutil.rmtree(adapter_dir, ignore_errors=True)
        summary = {k: v for k, v in trainer.state.log_history[-1].items()} if trainer.state.log_history else {}
        (output_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
        (output_dir / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    trainer.accelerator.wait_for_everyone()


def train_command(data_args: DataArguments, config: OmniGRPOConfig, model_args: OmniModelConfig) -> int:
    """`hs-rl train`: every check first (hs_rl.preflight: all problems at once, the records by modality), then
    `run_train` with its output in OUTPUT_DIR/train.log (hs_rl.stage_log: the pipeline's live line on a terminal),
    then the model card. Under `hs-rl pipeline` the pipeline has checked and logs already."""
    import traceback

    from accelerate import PartialState

    from hs_rl.errors import EXIT_CODE, UserError, format_lines
    from hs_rl.preflight import check_stage
    from hs_rl.stage_log import capture, tail

    is_main = PartialState().is_main_process
    failure: list[str] = []
    with capture(config.output_dir) as log:
        if log is not None and log.mode == "live" and is_main:
            log.to_console(f"{Path(config.output_dir).name}: the whole output goes to {log.path} "
                           f"(HS_RL_CONSOLE=full shows it here too)", past_the_line=False)
        try:
            check = check_stage(data_args, config, model_args, is_main=is_main)
            if check.warnings and log is not None and log.mode == "live" and is_main:
                log.to_console("\n".join(f"WARNING {line}" for line in check.warnings))  # not only in train.log
            code = run_train(data_args, config, model_args)
        except (UserError, SystemExit) as error:  # one line (a SystemExit with a message: e.g. a full disk)
            if log is None or (isinstance(error, SystemExit) and not isinstance(error.code, str)):
                raise
            failure = format_lines(error, "hs-rl train: ") if isinstance(error, UserError) else [str(error.code)]
            code = EXIT_CODE if isinstance(error, UserError) else 1
            if is_main:  # into train.log (and onto the console in `full` mode), once, not once per process
                print("\n".join(failure), file=sys.stderr, flush=True)
        except Exception as error:
            if log is None:
                raise
            traceback.print_exc()  # into train.log (and onto the console in `full` mode)
            failure, code = [f"hs-rl train: failed ({type(error).__name__}: {error})", f"last lines of {log.path}:"], 1
    if code and log is not None and log.mode == "live" and is_main:  # the console showed the live line only
        if not failure:  # a run that ended itself with a message (Ctrl-C: interrupted, how to resume): its last line
            failure = tail(log.path, 1)
        elif code == 1 and failure[-1].startswith("last lines"):
            failure += [f"    {line}" for line in tail(log.path)]
        print("\n".join(failure), file=sys.stderr, flush=True)
    if code == 0 and is_main:
        from hs_rl.model_card import write_model_card

        write_model_card(data_args, config, model_args)
    return code


def main(argv: list[str] | None = None) -> int:
    """`python -m hs_rl.train STAGE.yaml …` (what `accelerate launch -m hs_rl.train` runs)."""
    from hs_rl.cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


STAGES_ENV = "HS_RL_STAGES"  # folder of the stage YAMLs the launch/stage*.sh scripts read (default `stages`)
REPOSITORY = Path(__file__).resolve().parent.parent


def stage_file(name: str) -> Path:
    """`$HS_RL_STAGES/name` (default `stages/name`): relative to the working directory, else to the checkout."""
    folder = Path(os.environ.get(STAGES_ENV) or "stages")
    candidates = [folder / name] if folder.is_absolute() else [folder / name, REPOSITORY / folder / name]
    for path in candidates:
        if path.is_file():
            return path
    from hs_rl.errors import UserError

    raise UserError(f"stage YAML {name} not found in {' or '.join(str(c.parent) for c in candidates)} "
                    f"(set {STAGES_ENV} to the folder of your stage YAMLs)")


def stage_main(name: str, argv: list[str]) -> int:
    """What `accelerate launch launch/stage1.sh …` runs in every process: `hs-rl train $HS_RL_STAGES/name …`."""
    from hs_rl.errors import EXIT_CODE, UserError, report

    try:
        path = stage_file(name)
    except UserError as error:
        report(error, prefix="hs-rl train: ")
        return EXIT_CODE
    return main([str(path), *argv])


if __name__ == "__main__":
    sys.exit(main())
