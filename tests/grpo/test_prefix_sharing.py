"""Packed groups (hs_rl.grpo.prefix_sharing) equal the plain per-row forward: log-probs, entropies, gradients.

Checked on a shuffled micro-batch of whole groups mixing video, audio and video+audio prompts; with gradient
checkpointing on and LoRA; with completions of different lengths (padding); on any grouping of rows (split
groups, singletons) through the packing function itself. ZeRO-3 with two processes: tests/grpo/test_deepspeed_cpu.py.
"""
from __future__ import annotations

import logging

import pytest
import torch

from hs_rl.grpo import prefix_sharing
from hs_rl.grpo.prefix_sharing import prompt_groups, shared_prefix_logps, splits_a_group
from hs_rl.omni.families import family_of, multimodal_model
from hs_rl.omni.inputs import thinker_of
from hs_rl.train import build_trainer
from tests.grpo.trainer_helpers import interleaved, parameter_parts, sample_records, stage_args


def _buffered_trainer(tiny_model, sample_data, out, **overrides):
    """A trainer that generated one micro-batch of three whole groups (video, audio, video_audio), shuffled by TRL."""
    chosen = interleaved(sample_records(sample_data), count=3)
    settings = dict(per_device_train_batch_size=9, num_generations=3, steps_per_generation=1, beta=0.1,
                    temperature=0.7, max_completion_length=6)
    trainer = build_trainer(*stage_args(tiny_model["full"], chosen, out, **{**settings, **overrides}))
    assert trainer.shared_prefix
    if trainer.args.gradient_checkpointing:  # as Trainer.train switches it on (the method's name before 5.23's rename)
        kwargs = trainer.args.gradient_checkpointing_kwargs or None
        if hasattr(trainer.model, "activation_checkpointing_enable"):
            trainer.model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            trainer.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    trainer._prepare_inputs(batch)
    micro = trainer._buffered_inputs[0]
    kinds = {(r.has_video, r.has_audio, r.use_audio_in_video) for r in micro["media"]}
    assert len(kinds) == 3, f"the micro-batch does not mix video, audio and video_audio rows: {kinds}"
    return trainer


@pytest.fixture(scope="module")
def buffered(tiny_model, sample_data, tmp_path_factory):
    return _buffered_trainer(tiny_model, sample_data, tmp_path_factory.mktemp("prefix"))


@pytest.fixture(scope="module")
def buffered_lora_checkpointed(tiny_model, sample_data, tmp_path_factory):
    trainer = _buffered_trainer(tiny_model, sample_data, tmp_path_factory.mktemp("prefix_lora"),
                                gradient_checkpointing=True, use_peft=True, lora_r=4, lora_alpha=8, lora_dropout=0.0,
                                lora_target_modules=["q_proj", "v_proj", "down_proj"])
    thinker = thinker_of(trainer.accelerator.unwrap_model(trainer.model))
    language_model = family_of(thinker).language_model(thinker)
    assert language_model.gradient_checkpointing and language_model.is_gradient_checkpointing
    assert trainer.model.__class__.__name__.startswith("Peft")
    return trainer


def _inputs(micro, order=None, cut=None):
    """(ids, mask, rows, logits_to_keep) of a buffered micro-batch; `cut` shortens some completions (padding)."""
    ids = torch.cat([micro["prompt_ids"], micro["completion_ids"]], dim=1)
    mask = torch.cat([micro["prompt_mask"], micro["completion_mask"]], dim=1).clone()
    keep = micro["completion_ids"].size(1)
    if cut:
        for row, length in cut.items():
            mask[row, ids.size(1) - keep + length:] = 0
    rows = micro["media"]
    if order is not None:
        ids, mask, rows = ids[order], mask[order], [rows[i] for i in order]
    return ids, mask, rows, keep


def _forward(trainer, inputs, shared: bool, direct: bool = False):
    """(log-probs, entropies, grads of the sum of masked log-probs w.r.t. the trained parameters)."""
    ids, mask, rows, keep = inputs
    trainer._rows = rows
    trainer.shared_prefix = shared
    trainer.model.zero_grad(set_to_none=True)
    calls = []
    original = prefix_sharing.shared_prefix_logps

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    try:
        if direct:  # the packing function on any grouping, bypassing the trainer's whole-group rule
            thinker = thinker_of(trainer.accelerator.unwrap_model(trainer.model))
            logps, entropies = shared_prefix_logps(trainer.model, thinker, ids, mask, rows, keep,
                                                   encoders_frozen=True, run_all_towers=False, compute_entropy=True)
        else:
            import hs_rl.grpo.trainer as trainer_module

            trainer_module.shared_prefix_logps = counted
            try:
                logps, entropies, _ = trainer._get_per_token_logps_and_entropies(
                    trainer.model, ids, mask, keep, compute_entropy=True)
            finally:
                trainer_module.shared_prefix_logps = original
            assert bool(calls) == shared, "the packed path was not taken" if shared else "packed path taken"
        (logps * mask[:, -keep:]).sum().backward()
    finally:
        trainer.shared_prefix = True
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters()
             if p.requires_grad and p.grad is not None}
    trainer.model.zero_grad(set_to_none=True)
    return logps.detach(), entropies.detach(), grads


def _compare(trainer, inputs, direct=False):
    """Packed vs plain on the valid completion columns (the plain path's padded columns are masked by TRL)."""
    plain = _forward(trainer, inputs, shared=False)
    packed = _forward(trainer, inputs, shared=True, direct=direct)
    valid = inputs[1][:, -inputs[3]:].bool()
    assert valid.any()
    torch.testing.assert_close(packed[0][valid], plain[0][valid], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed[1][valid], plain[1][valid], atol=1e-5, rtol=1e-5)
    assert not packed[0][~valid].any()  # padded columns: 0, never read by TRL's masked losses
    parts = parameter_parts(trainer.model)
    assert plain[2].keys() == packed[2].keys() and any(parts[n] == "language" for n in plain[2])
    worst = 0.0
    for name in plain[2]:
        scale = plain[2][name].abs().max().clamp(min=1e-12)
        relative = ((packed[2][name] - plain[2][name]).abs().max() / scale).item()
        assert relative <= 1e-5, f"{name}: relative gradient difference {relative:.2e}"
        worst = max(worst, relative)
    return (packed[0] - plain[0])[valid].abs().max().item(), worst


def test_groups_by_identity():
    a, b, c = object(), object(), object()
    assert prompt_groups([a, b, a, c, b]) == ([0, 1, 3], [0, 1, 0, 2, 1])
    assert prompt_groups([a]) == ([0], [0])
    assert not splits_a_group([a, b, a, b], 2) and splits_a_group([a, b, a], 2)


def test_packed_equals_plain_on_shuffled_mixed_batch(buffered):
    micro = buffered._buffered_inputs[0]
    logp_diff, grad_diff = _compare(buffered, _inputs(micro))
    print(f"groups={len(prompt_groups(micro['media'])[0])} rows={len(micro['media'])} "
          f"max|dlogp|={logp_diff:.2e} max rel dgrad={grad_diff:.2e}")


def test_packed_equals_plain_with_padding_and_reordering(buffered):
    micro = buffered._buffered_inputs[0]
    n = len(micro["media"])
    _compare(buffered, _inputs(micro, cut={0: 2, 3: 1, 5: 4, 7: 0}))
    _compare(buffered, _inputs(micro, order=list(reversed(range(n))), cut={1: 3}))


def test_packing_any_grouping(buffered):
    """The packing function itself on split groups and a singleton (the trainer sends these to the plain path)."""
    micro = buffered._buffered_inputs[0]
    rows = micro["media"]
    first, group_of_row = prompt_groups(rows)
    split = [i for i in range(len(rows)) if group_of_row[i] == 0][:2] + [first[1]]
    _compare(buffered, _inputs(micro, order=split), direct=True)
    _compare(buffered, _inputs(micro, order=[0]), direct=True)


def test_split_group_falls_back_with_one_log_line(buffered, caplog):
    micro = buffered._buffered_inputs[0]
    buffered._split_group_logged = False
    with caplog.at_level(logging.WARNING, logger="hs_rl.grpo.trainer"):
        _forward(buffered, _inputs(micro, order=[0, 1]), shared=False)  # shared_prefix on, but a split group
        buffered.shared_prefix = True
        buffered._rows = [micro["media"][0], micro["media"][1]]
        ids, mask, rows, keep = _inputs(micro, order=[0, 1])
        buffered._get_per_token_logps_and_entropies(buffered.model, ids, mask, keep)
        buffered._get_per_token_logps_and_entropies(buffered.model, ids, mask, keep)
    lines = [r for r in caplog.records if "holds part of a group" in r.getMessage()]
    assert len(lines) == 1


def test_packed_equals_plain_with_gradient_checkpointing_and_lora(buffered_lora_checkpointed):
    trainer = buffered_lora_checkpointed
    micro = trainer._buffered_inputs[0]
    _, _, grads = _forward(trainer, _inputs(micro), shared=True)
    assert grads and all("lora_" in n for n in grads)
    _compare(trainer, _inputs(micro, cut={2: 3}))


def test_packed_in_old_and_ref_logps(buffered):
    """The generation-time reference log-probs (computed packed) match a plain recomputation."""
    micro = buffered._buffered_inputs[0]
    plain = _forward(buffered, _inputs(micro), shared=False)[0]
    valid = micro["completion_mask"].bool()
    torch.testing.assert_close(micro["ref_per_token_logps"][valid], plain[valid], atol=1e-4, rtol=1e-4)


def test_training_step_packed(tiny_model, sample_data, tmp_path):
    trainer = build_trainer(*stage_args(tiny_model["full"], interleaved(sample_records(sample_data), count=6),
                                        tmp_path, per_device_train_batch_size=6, num_generations=3, beta=0.05,
                                        gradient_checkpointing=True))
    assert trainer.shared_prefix
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p)]
    parts = parameter_parts(trainer.model)
    assert any(parts[n] == "language" for n in changed)


def test_batched_group_generation_matches_per_prompt_generate(buffered):
    """Greedy: one decode loop over several groups (prefilled once each) = HF generate per prompt with its raw
    media, token for token and in the next-token logits of every step."""
    import copy

    from hs_rl.omni.generation import generate_rows

    trainer = buffered
    thinker = thinker_of(trainer.accelerator.unwrap_model(trainer.model))
    rows = [r for m in trainer._buffered_inputs for r in m["media"]]
    distinct = list({id(r): r for r in rows}.values())[:3]
    batch = [distinct[0], distinct[1], distinct[0], distinct[2], distinct[1]]  # interleaved groups, one of size 1
    greedy = copy.deepcopy(trainer.generation_config)
    greedy.do_sample, greedy.max_new_tokens, greedy.eos_token_id = False, 5, None
    logits: list[torch.Tensor] = []
    hook = thinker.lm_head.register_forward_hook(lambda m, i, out: logits.append(out[:, -1].detach().clone()))
    try:
        with torch.no_grad():
            ours = generate_rows(thinker, batch, greedy, trainer.eos_token_ids)
            ours_logits = torch.stack(logits, 1)  # (rows, steps, V)
            for b, (row, completion) in enumerate(zip(batch, ours)):
                kwargs = {k: getattr(row, k) for k in ("pixel_values_videos", "video_grid_thw", "video_second_per_grid",
                                                       "input_features", "feature_attention_mask")
                          if getattr(row, k) is not None}
                logits.clear()
                multimodal_model(thinker).rope_deltas = None
                ids = row.input_ids[None]
                ref = thinker.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                       use_audio_in_video=row.use_audio_in_video, generation_config=greedy, **kwargs)
                multimodal_model(thinker).rope_deltas = None
                assert completion == ref[0, row.input_ids.numel():].tolist()
                torch.testing.assert_close(ours_logits[b], torch.cat(logits), atol=1e-4, rtol=1e-4)
    finally:
        hook.remove()
