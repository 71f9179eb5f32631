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


def build_trainer(data_args: DataArguments, config: OmniGRPOConfig, model_args: OmniModelConfig):
    """Every object of a stage, checked in order of cost: paths, data, rewards, then weights."""
    from accelerate import PartialState

    from hs_rl.grpo.checkpoints import check_generation_cycle
    from hs_rl.data.dataset import build_train_dataset
    from hs_rl.data.prompts import check_prompt_source
    from hs_rl.grpo.model import (check_model_dir, check_model_modalities, freeze_encoders, freeze_experts,
                                  load_processor, load_thinker)
    from hs_rl.reward_guard import guard_reward
    from hs_rl.rewards import get_rewards
    from hs_rl.grpo.trainer import OmniGRPOTrainer

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
    rewards = [guard_reward(fn, config.reward_errors, reward_counter) for fn in get_rewards(config.reward_funcs)]
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
    config.remove_unused_columns = False
    dataset = build_train_dataset(records, processor, data_args)
    peft_config = None
    if model_args.use_peft:
        from trl import get_peft_config

        peft_config = get_peft_config(model_args)
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


def checkpoint_is_final(checkpoint: str, max_steps: int) -> bool:
    """Whether a checkpoint already holds the run's last step (this run's max_steps, else the saved run's)."""
    state_file = Path(checkpoint) / "trainer_state.json"
    if not state_file.is_file():
        return False
    state = json.loads(state_file.read_text())
    last = max_steps if max_steps and max_steps > 0 else state.get("max_steps", 0)
    return bool(last) and state.get("global_step", 0) >= last


def run_train(data_args: DataArguments, config: OmniGRPOConfig, model_args: OmniModelConfig) -> int:
    """Train one stage and export its final model to `OUTPUT_DIR/final` (full Omni when the input was full).

    `resume_from_checkpoint: auto` resumes from the newest complete checkpoint (see hs_rl.grpo.checkpoints).
    """
    from accelerate import PartialState

    from hs_rl.grpo.checkpoints import discard_incomplete, resolve_resume
    from hs_rl.grpo.export import FINAL_DIR, export_model

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    output_dir = Path(config.output_dir)
    resume = resolve_resume(config.resume_from_checkpoint, output_dir)
    state = PartialState()
    if state.is_main_process and str(config.resume_from_checkpoint).lower() in ("auto", "true"):
        discard_incomplete(output_dir)
    state.wait_for_everyone()
    trainer = build_trainer(data_args, config, model_args)
    if resume and checkpoint_is_final(resume, config.max_steps):
        # HF's Trainer resumed at its last step still runs one more step; load the weights and export instead
        from hs_rl.grpo.checkpoints import load_saved_weights

        logger.info("%s is the run's last step: exporting it without training", resume)
        load_saved_weights(trainer.model, Path(resume))
        from transformers import TrainerState

        trainer.state = TrainerState.load_from_json(str(Path(resume) / "trainer_state.json"))
    else:
        trainer.train(resume_from_checkpoint=resume)
    thinker_dir = output_dir / ".final-thinker"
    trainer.save_model(str(thinker_dir))  # collective under DeepSpeed: every rank takes part
    if trainer.accelerator.is_main_process:
        trainer.processing_class.save_pretrained(str(thinker_dir))
        with _without_zero3_loading():  # export loads models on this rank alone
            export_model(thinker_dir, model_args.model_name_or_path, output_dir / FINAL_DIR)
        shutil.rmtree(thinker_dir, ignore_errors=True)
        summary = {k: v for k, v in trainer.state.log_history[-1].items()} if trainer.state.log_history else {}
        (output_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
        (output_dir / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    trainer.accelerator.wait_for_everyone()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m hs_rl.train STAGE.yaml …` (what `accelerate launch -m hs_rl.train` runs)."""
    from hs_rl.cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
