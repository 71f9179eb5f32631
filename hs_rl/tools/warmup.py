"""Format warm-up: a short supervised pass that teaches `<think>…</think><answer>L</answer>` and nothing else.

A random model never samples the tags, so GRPO would see format and accuracy rewards of zero everywhere and
no advantage to follow. This pass trains on the real prompts (media included, through the same `lm_inputs` /
`rope_positions` forward as the GRPO loss), each prompt with every one of its option letters as a target,
independently of the media: it teaches the shape of an answer, and the model it makes answers at chance.
It runs in transformers' `Trainer` (optimizer, schedule, seeding, saving are its own); only the loss is ours.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainingArguments

from hs_rl.data.arguments import DataArguments
from hs_rl.data.prompt_media import PromptMedia
from hs_rl.data.records import Record
from hs_rl.omni.inputs import lm_inputs, rope_positions, thinker_of

THOUGHT = ""  # an empty thought: the shortest well-formed answer (12 tokens + end), so steps stay cheap


def warmup_target(letter: str) -> str:
    """The completion the warm-up teaches (the tokenizer's end-of-turn token is appended to it)."""
    return f"<think>{THOUGHT}</think><answer>{letter}</answer>"


class WarmupDataset(torch.utils.data.Dataset):
    """`length` items cycling over the prompts; an item is one prompt with EVERY option letter as a target.

    Each prompt is taught all its letters at once (one row per letter, see `collate`), so the letter's loss is
    the cross-entropy to a uniform choice, exactly, in every batch. Drawing one random letter per sample taught
    the same in expectation only: after a short warm-up the sampled letters leaned 60 % to one letter, and GRPO,
    which can only reinforce what it samples, collapsed onto it instead of learning from the media.
    """

    def __init__(self, prompts: list[tuple[PromptMedia, Record]], tokenizer, length: int, seed: int):
        end = tokenizer.eos_token
        targets = {letter: torch.tensor(tokenizer(warmup_target(letter) + end, add_special_tokens=False)["input_ids"])
                   for letter in "ABCDE"}  # tokenized once; items share these tensors (nothing writes to them)
        order = random.Random(seed).sample(range(len(prompts)), len(prompts))
        self.items = []
        for i in range(length):
            media, record = prompts[order[i % len(prompts)]]
            letters = "ABCDE"[:max(len(record.options), 1)]
            self.items.append({"media": media, "targets": [targets[letter] for letter in letters]})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per (prompt, letter): left-padded prompts then right-padded targets, as GRPO's loss lays them out."""
    pairs = [(item["media"], target) for item in items for target in item["targets"]]
    rows = [media for media, _ in pairs]
    width = max(r.input_ids.numel() for r in rows)
    tail = max(target.numel() for _, target in pairs)
    ids = torch.zeros(len(pairs), width + tail, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for b, (row, target) in enumerate(pairs):
        p, t = row.input_ids.numel(), target.numel()
        ids[b, width - p:width], mask[b, width - p:width] = row.input_ids, 1
        ids[b, width:width + t], mask[b, width:width + t] = target, 1
        labels[b, width:width + t] = target
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "rows": rows, "prompt_width": width}


class FormatWarmupTrainer(Trainer):
    """transformers' Trainer with a loss over the target tokens of prompts carrying their own media."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        thinker = thinker_of(model)
        rows, width = inputs["rows"], inputs["prompt_width"]
        # lm_inputs: the embeds plus what the family adds (Qwen3-Omni's DeepStack features)
        embedded = lm_inputs(thinker, inputs["input_ids"], rows, use_cache=True, prompt_width=width)
        positions = rope_positions(thinker, inputs["attention_mask"], rows, width)
        outputs = model(**embedded, attention_mask=inputs["attention_mask"], position_ids=positions,
                        labels=inputs["labels"])
        return (outputs.loss, outputs) if return_outputs else outputs.loss


def format_warmup(model_dir: str | Path, records: list[Record], output_dir: str | Path, *, steps: int = 150,
                  batch_size: int = 2, learning_rate: float = 3e-3, seed: int = 0,
                  data_args: DataArguments | None = None) -> Path:
    """Train the format on `records`' prompts (`batch_size` prompts a step, each with every letter) and export
    the result to `output_dir/final`."""
    from hs_rl.data.prompt_media import prepare_prompt
    from hs_rl.omni.export import FINAL_DIR, export_model, is_exported
    from hs_rl.omni.loading import freeze_encoders, load_processor, load_thinker

    output_dir = Path(output_dir)
    final = output_dir / FINAL_DIR
    if is_exported(final):
        return final
    torch.manual_seed(seed)
    processor = load_processor(model_dir)
    thinker = load_thinker(model_dir, "float32")
    freeze_encoders(thinker)
    data_args = data_args or DataArguments()
    prompts = [(prepare_prompt(r, processor, data_args)[0], r) for r in records]
    dataset = WarmupDataset(prompts, processor.tokenizer, steps * batch_size, seed)
    args = TrainingArguments(
        output_dir=str(output_dir), max_steps=steps, per_device_train_batch_size=batch_size,
        learning_rate=learning_rate, lr_scheduler_type="cosine", warmup_steps=max(steps // 20, 1), seed=seed,
        logging_steps=max(steps // 10, 1), save_strategy="no", report_to=[], use_cpu=True,
        remove_unused_columns=False, dataloader_num_workers=0, disable_tqdm=True)
    trainer = FormatWarmupTrainer(model=thinker, args=args, train_dataset=dataset, data_collator=collate)
    trainer.train()
    thinker_dir = output_dir / ".thinker"
    trainer.save_model(str(thinker_dir))
    processor.save_pretrained(str(thinker_dir))
    export_model(thinker_dir, model_dir, final)
    import json

    (output_dir / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    import shutil

    shutil.rmtree(thinker_dir, ignore_errors=True)
    return final
