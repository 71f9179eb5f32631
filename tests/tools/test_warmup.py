"""The demo's format warm-up (hs_rl.tools.warmup) in the fast lane: the demo runs that exercise it are slow-lane.

A few steps on the tiny model and real sample clips: every option letter of a prompt is a target row with labels on
the answer tokens only, the loss falls, the result is an exported full model holding the trained weights, and a
second call finds it and trains nothing.
"""
from __future__ import annotations

import json

import torch


def _records(sample_data):
    from hs_rl.data.convert import convert_file

    records = convert_file(sample_data["train_json"], media_root=sample_data["media_root"])
    return [next(r for r in records if r.modality == m) for m in ("video", "audio", "video_audio")]


def test_each_prompt_is_taught_every_letter_on_its_answer_tokens_only(tiny_model, sample_data):
    from hs_rl.data.arguments import DataArguments
    from hs_rl.data.prompt_media import prepare_prompt
    from hs_rl.omni.loading import load_processor
    from hs_rl.tools.warmup import WarmupDataset, collate, warmup_target

    processor = load_processor(tiny_model["full"])
    records = _records(sample_data)
    prompts = [(prepare_prompt(r, processor, DataArguments())[0], r) for r in records]
    dataset = WarmupDataset(prompts, processor.tokenizer, length=3, seed=0)
    batch = collate([dataset[0]])
    record = next(r for media, r in prompts if media is dataset[0]["media"])
    letters = "ABCDE"[:len(record.options)]
    assert batch["input_ids"].shape[0] == len(letters) > 1
    width = batch["prompt_width"]
    assert (batch["labels"][:, :width] == -100).all()  # no loss on the prompt
    taught = [processor.tokenizer.decode(row[row != -100]) for row in batch["labels"]]
    assert taught == [warmup_target(letter) + processor.tokenizer.eos_token for letter in letters]


def test_warmup_trains_the_format_exports_a_full_model_and_is_not_run_twice(tiny_model, sample_data, tmp_path,
                                                                           monkeypatch):
    from transformers import Trainer

    from hs_rl.omni.export import is_exported
    from hs_rl.omni.loading import load_thinker
    from hs_rl.tools.warmup import format_warmup

    final = format_warmup(tiny_model["full"], _records(sample_data), tmp_path / "base", steps=8, batch_size=1,
                          learning_rate=1e-2)
    assert is_exported(final) and final == tmp_path / "base" / "final"
    losses = [h["loss"] for h in json.loads((tmp_path / "base" / "log_history.json").read_text()) if "loss" in h]
    assert len(losses) == 8 and losses[-1] < losses[0], losses
    old, new = load_thinker(tiny_model["full"]).state_dict(), load_thinker(final).state_dict()
    assert old.keys() == new.keys() and any(not torch.equal(old[k], new[k]) for k in old)  # the trained weights

    def train_again(*args, **kwargs):
        raise AssertionError("format_warmup trained again over an exported result")

    monkeypatch.setattr(Trainer, "train", train_again)
    assert format_warmup(tiny_model["full"], _records(sample_data), tmp_path / "base", steps=8) == final
