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

from hs_rl.grpo.config import DataArguments, OmniGRPOConfig, OmniModelConfig

logger = logging.getLogger(__name__)

__all__ = ["DataArguments", "OmniGRPOConfig", "OmniModelConfig", "run_train", "main"]


def load_training_records(data_args: DataArguments, output_dir: Path, is_main: bool):
    """Validated records of the stage's dataset; invalid ones stop the run unless `skip_invalid`."""
    from hs_rl.data.validation import filter_valid, validate_file, write_dropped

    if not data_args.dataset:
        raise ValueError("no dataset: set `dataset:` in the stage YAML or pass --dataset FILE.jsonl")
    if not Path(data_args.dataset).is_file():
        raise FileNotFoundError(f"dataset {data_args.dataset!r} does not exist")
    report = validate_file(data_args.dataset, use_cache=True) if data_args.validate_data else None
    if report is None:
        from hs_rl.data.records import load_records

        return load_records(data_args.dataset)
    if report.ok:
        return report.records
    if not data_args.skip_invalid:
        raise ValueError(f"{len(report.problems)} problem(s) in the training data; fix them or set "
                         f"skip_invalid: true to drop those records:\n{report.format()}")
    kept, dropped = filter_valid(report)
    if is_main:
        write_dropped(dropped, output_dir / "dropped_records.jsonl")
    logger.warning("skip_invalid: dropped %d record(s), listed in %s", len(dropped),
                   output_dir / "dropped_records.jsonl")
    return kept


# LoRA on every projection of the language model's attention and MLP unless `lora_target_modules` says otherwise
LORA_DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def build_trainer(data_args: DataArguments, config: OmniGRPOConfig, model_args: OmniModelConfig):
    """Every object of a stage, checked in order of cost: paths, data, rewards, then weights."""
    from accelerate import PartialState

    from hs_rl.data.dataset import build_train_dataset
    from hs_rl.data.prompts import check_prompt_source
    from hs_rl.grpo.checkpoints import check_generation_cycle
    from hs_rl.grpo.model import (
        check_model_dir,
        check_model_modalities,
        freeze_encoders,
        freeze_experts,
        load_processor,
        load_thinker,
    )
    from hs_rl.grpo.trainer import OmniGRPOTrainer
    from hs_rl.rewards import get_rewards
    from hs_rl.rewards.guard import guard_reward

    state = PartialState()
    output_dir = Path(config.output_dir)
    check_model_dir(model_args.model_name_or_path or "")
    check_generation_cycle(config)
    if config.use_vllm:
        raise ValueError("use_vllm: not supported yet — vLLM in TRL's colocate mode takes images only, so video and "
                         "audio prompts would lose their media (see README, 'vLLM'); generation uses transformers")
    records = load_training_records(data_args, output_dir, state.is_main_process)
    check_prompt_source(records, data_args.prompt_source, data_args.think)
    check_model_modalities(model_args.model_name_or_path, {r.modality for r in records})
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
    dataset = build_train_dataset(records, processor, data_args)
    peft_config = None
    if model_args.use_peft:
        from trl import get_peft_config

        peft_config = get_peft_config(model_args)
        if peft_config.target_modules is None and getattr(peft_config, "target_parameters", None) is None:
            peft_config.target_modules = list(LORA_DEFAULT_TARGETS)  # peft has no default for the Omni thinker
        if isinstance(peft_config.target_modules, (list, set)) and config.freeze_vision_encoder \
                and config.freeze_audio_encoder:
            # module names like q_proj also exist in the encoders: with frozen encoders, adapt the LM only
            names = "|".join(sorted(peft_config.target_modules))
            peft_config.target_modules = rf".*language_model.*\.({names})$"
    trainer = OmniGRPOTrainer(
        model=model, reward_funcs=rewards, args=config, train_dataset=dataset, processing_class=processor,
        peft_config=peft_config,
        encoders_frozen=config.freeze_vision_encoder and config.freeze_audio_encoder,
        run_all_towers=config.run_all_towers,
        completions_log=output_dir / "completions.jsonl" if config.completions_log else None,
    )
    trainer.reward_error_counts = reward_counter  # filled by the guarded rewards, logged by the trainer
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

    `resume_from_checkpoint: auto` resumes from the newest complete checkpoint (see hs_rl.grpo.checkpoints).
    """
    from accelerate import PartialState

    from hs_rl.grpo.checkpoints import discard_incomplete, refuse_foreign_checkpoints, resolve_resume
    from hs_rl.grpo.export import ADAPTER_DIR, FINAL_DIR, export_model, keep_adapter, merge_adapter

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    output_dir = Path(config.output_dir)
    resume = resolve_resume(config.resume_from_checkpoint, output_dir)
    stale = refuse_foreign_checkpoints(output_dir, resume, config.overwrite_output_dir)
    state = PartialState()
    if state.is_main_process:
        if str(config.resume_from_checkpoint).lower() in ("auto", "true"):
            discard_incomplete(output_dir)
        for path in stale:  # overwrite_output_dir: the earlier run's checkpoints go
            logger.warning("overwrite_output_dir: deleting %s of an earlier run", path)
            shutil.rmtree(path)
    state.wait_for_everyone()
    trainer = build_trainer(data_args, config, model_args)
    # Always through the Trainer, even from the run's last checkpoint: it loads the weights (and under DeepSpeed
    # prepares the engine and loads its shards) exactly as for a resume; OmniGRPOTrainer._run_epoch then trains
    # nothing when no step is left, so a re-run only completes the export.
    trainer.train(resume_from_checkpoint=resume)
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
    return 0


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
    raise FileNotFoundError(f"stage YAML {name} not found in {' or '.join(str(c.parent) for c in candidates)} "
                            f"(set {STAGES_ENV} to the folder of your stage YAMLs)")


def stage_main(name: str, argv: list[str]) -> int:
    """What `accelerate launch launch/stage1.sh …` runs in every process: `hs-rl train $HS_RL_STAGES/name …`."""
    return main([str(stage_file(name)), *argv])


if __name__ == "__main__":
    sys.exit(main())
