"""Shared-prompt forward (hs_rl.grpo.prefix_sharing) equals the plain per-row forward: log-probs, entropies,
gradients."""
from __future__ import annotations

import pytest
import torch

from hs_rl.grpo.prefix_sharing import prompt_groups, unsafe_reason
from hs_rl.train import build_trainer
from tests.grpo.trainer_helpers import interleaved, sample_records, stage_args


@pytest.fixture(scope="module")
def buffered(tiny_model, sample_data, tmp_path_factory):
    """A trainer that generated one mixed (video, audio, video_audio) batch, shuffled and split by TRL."""
    out = tmp_path_factory.mktemp("prefix")
    chosen = interleaved(sample_records(sample_data), count=8)
    trainer = build_trainer(*stage_args(tiny_model["full"], chosen, out, per_device_train_batch_size=6,
                                        num_generations=3, steps_per_generation=2, beta=0.1, temperature=0.7,
                                        max_completion_length=6))
    assert trainer.shared_prefix
    trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    trainer._prepare_inputs(batch)
    return trainer


def _forward(trainer, micro, shared: bool, order=None):
    """(log-probs, entropies, grads of sum of masked log-probs w.r.t. the LM parameters)."""
    ids = torch.cat([micro["prompt_ids"], micro["completion_ids"]], dim=1)
    mask = torch.cat([micro["prompt_mask"], micro["completion_mask"]], dim=1)
    rows = micro["media"]
    if order is not None:
        ids, mask, rows = ids[order], mask[order], [rows[i] for i in order]
    trainer._rows = rows
    trainer.shared_prefix = shared
    trainer.model.zero_grad(set_to_none=True)
    try:
        logps, entropies, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, mask, micro["completion_ids"].size(1), compute_entropy=True)
        completion_mask = mask[:, -micro["completion_ids"].size(1):]
        (logps * completion_mask).sum().backward()
    finally:
        trainer.shared_prefix = True
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters()
             if p.requires_grad and p.grad is not None}
    trainer.model.zero_grad(set_to_none=True)
    return logps.detach(), entropies.detach(), grads


def _compare(trainer, micro, order=None):
    plain = _forward(trainer, micro, shared=False, order=order)
    shared = _forward(trainer, micro, shared=True, order=order)
    torch.testing.assert_close(shared[0], plain[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared[1], plain[1], atol=1e-5, rtol=1e-5)
    assert plain[2].keys() == shared[2].keys() and any("language_model" in n for n in plain[2])
    for name in plain[2]:
        torch.testing.assert_close(shared[2][name], plain[2][name], atol=1e-5, rtol=1e-4, msg=name)
    return (max((shared[0] - plain[0]).abs().max().item(), 0.0),
            max((shared[2][n] - plain[2][n]).abs().max().item() for n in plain[2]))


def test_groups_by_identity():
    a, b, c = object(), object(), object()
    assert prompt_groups([a, b, a, c, b]) == ([0, 1, 3], [0, 1, 0, 2, 1])
    assert prompt_groups([a]) == ([0], [0])


def test_shared_prefix_equals_plain_on_shuffled_mixed_batch(buffered):
    trainer = buffered
    kinds = set()
    for micro in trainer._buffered_inputs:
        rows = micro["media"]
        kinds |= {(r.has_video, r.has_audio, r.use_audio_in_video) for r in rows}
        logp_diff, grad_diff = _compare(trainer, micro)
        print(f"groups={len(prompt_groups(rows)[0])} rows={len(rows)} max|dlogp|={logp_diff:.2e} "
              f"max|dgrad|={grad_diff:.2e}")
    assert len(kinds) == 3, f"the batch did not mix video, audio and video_audio rows: {kinds}"


def test_any_grouping_and_singletons(buffered):
    """Reversed and interleaved rows, and a group of size one (a row alone in its micro-batch slice)."""
    trainer = buffered
    micro = trainer._buffered_inputs[0]
    n = len(micro["media"])
    _compare(trainer, micro, order=list(reversed(range(n))))
    _compare(trainer, micro, order=[i for i in range(n) if i % 2 == 0] + [i for i in range(n) if i % 2])
    _compare(trainer, micro, order=[0])


def test_shared_prefix_in_old_and_ref_logps(buffered):
    """The generation-time old/ref log-probs (computed with shared_prefix on) match a plain recomputation."""
    trainer = buffered
    for micro in trainer._buffered_inputs:
        plain = _forward(trainer, micro, shared=False)[0]
        valid = micro["completion_mask"].bool()
        torch.testing.assert_close(micro["ref_per_token_logps"][valid], plain[valid], atol=1e-4, rtol=1e-4)


def test_fallback_with_gradient_checkpointing(tiny_model, sample_data, tmp_path):
    trainer = build_trainer(*stage_args(tiny_model["full"], interleaved(sample_records(sample_data), count=4),
                                        tmp_path, gradient_checkpointing=True))
    assert not trainer.shared_prefix
    assert "gradient checkpointing" in unsafe_reason(trainer)
    trainer.train()  # the plain path trains as before


def test_training_step_with_shared_prefix(tiny_model, sample_data, tmp_path):
    trainer = build_trainer(*stage_args(tiny_model["full"], interleaved(sample_records(sample_data), count=6),
                                        tmp_path, per_device_train_batch_size=6, num_generations=3, beta=0.05))
    assert trainer.shared_prefix
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = [n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p)]
    assert any("language_model" in n for n in changed)


def test_batched_group_generation_matches_per_prompt_generate(buffered):
    """Greedy: one decode loop over several groups (prefilled once each) = HF generate per prompt with its raw
    media, token for token and in the next-token logits of every step."""
    import copy

    from hs_rl.grpo.generation import generate_rows
    from hs_rl.grpo.omni_inputs import thinker_of

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
                thinker.model.rope_deltas = None
                ref = thinker.generate(input_ids=row.input_ids[None],
                                       attention_mask=torch.ones_like(row.input_ids[None]),
                                       use_audio_in_video=row.use_audio_in_video, generation_config=greedy, **kwargs)
                thinker.model.rope_deltas = None
                assert completion == ref[0, row.input_ids.numel():].tolist()
                torch.testing.assert_close(ours_logits[b], torch.cat(logits), atol=1e-4, rtol=1e-4)
    finally:
        hook.remove()
