"""Shared-prompt log-probs: a group's prompt goes through the language model once, its G completions reuse it.

In GRPO the G completions of a prompt share that prompt token for token, and the prompt (video + audio
placeholders, often thousands of tokens) is 5–20× longer than a completion. The plain forward runs every
row's prompt again, G times per group, in each of the old/reference/loss passes. Here, for a micro-batch:

1. rows are grouped by `PromptMedia` identity (any grouping: TRL shuffles a generation batch, so a group may
   be split, partial or of size 1 in a micro-batch);
2. the *prefix* — each group's prompt minus its last token — runs once per group (batch = groups) through the
   thinker's backbone with `use_cache=True`, with gradients, on the unwrapped thinker;
3. its KV cache is indexed out to the rows (`index_select`-like, differentiable: the gradients of the G rows
   flow back into the one prefix computation, summed);
4. the *suffix* of every row — the prompt's last token followed by the completion minus its last token —
   runs through the (possibly DDP-wrapped) model with `past_key_values=` that cache, the full
   prompt+completion attention mask, and 3-D rope positions sliced out of the full-sequence ones;
5. TRL's fused LM head scores the suffix with pre-shifted labels (`shift_labels`): hidden state i scores
   completion token i, so the first completion token is scored from the prompt's last hidden state, and no
   full-vocabulary logits are materialised (chunked, temperature applied as TRL does).

The wrapped model is called once per micro-batch, exactly as in the plain path, and the prefix is inside the
same autograd graph, so DDP sees one forward per backward and each parameter's gradient accumulator fires
once with the sum of both contributions (checked: tests/test_distributed.py, torchrun 2 processes, gloo, runs
with shared_prefix on).

Not used (the plain path runs, with a one-time log line) when it would be wrong or unverified:
- gradient checkpointing: transformers' checkpointed decoder layers drop `past_key_values` (they would append
  to the cache a second time on the backward replay), so the suffix would silently lose its prompt;
- DeepSpeed ZeRO-3: not verified here (parameters are gathered per module call; untested);
- PEFT: the wrapped `PeftModel` forward is not verified to pass the cache through;
- a MoE router auxiliary loss (Qwen3-Omni with `router_aux_loss_coef` > 0): the prompt's tokens would be
  counted once per group in the load-balancing loss instead of once per row.
Qwen3-Omni's DeepStack video features enter in the prefix forward (the only place media are).
"""
from __future__ import annotations

import logging
from typing import Any

import torch

from hs_rl.grpo.omni_inputs import PromptMedia, lm_inputs, prompt_groups, rope_positions, take_columns

logger = logging.getLogger(__name__)


def unsafe_reason(trainer: Any) -> str | None:
    """Why the shared-prefix forward must not be used with this trainer's set-up, or None when it is safe."""
    args = trainer.args
    if args.gradient_checkpointing:
        return ("gradient checkpointing is on: checkpointed decoder layers drop past_key_values, so the prompt's "
                "cache cannot be reused inside them")
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    if plugin is not None and plugin.zero_stage == 3:
        return "DeepSpeed ZeRO-3 is on (the shared-prefix forward is not verified under parameter partitioning)"
    if getattr(trainer, "aux_loss_enabled", False):
        return ("the MoE router auxiliary loss is on (router_aux_loss_coef): the shared forward would count a "
                "prompt's router logits once per group instead of once per row (set router_aux_loss_coef: 0.0 "
                "to use it)")
    from accelerate.utils import is_peft_model

    if is_peft_model(trainer.model):
        return "the model is a PEFT model (passing the prompt's cache through PeftModel.forward is not verified)"
    return None


def shared_prefix_logps(model: torch.nn.Module, thinker: torch.nn.Module, input_ids: torch.Tensor,
                        attention_mask: torch.Tensor, rows: list[PromptMedia], logits_to_keep: int, *,
                        encoders_frozen: bool, run_all_towers: bool, compute_entropy: bool,
                        autocast=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs (and entropies) of the last `logits_to_keep` columns of a (B, L) micro-batch.

    `input_ids` / `attention_mask` are TRL's: left-padded prompts of width P = L - logits_to_keep followed by
    right-padded completions. `model` is what the plain path calls (wrapped, with TRL's fused LM head added);
    `thinker` is the unwrapped thinker inside it. Equal to the plain path's result to float tolerance.
    """
    import contextlib

    batch, length = input_ids.shape
    width = length - logits_to_keep  # prompt width (left-padded)
    if width < 2:
        raise ValueError("shared prefix needs prompts of at least two tokens")
    first, group_of_row = prompt_groups(rows)
    device = input_ids.device
    index = torch.tensor(group_of_row, device=device)
    first_t = torch.tensor(first, device=device)
    group_rows = [rows[i] for i in first]
    autocast = autocast if autocast is not None else contextlib.nullcontext()

    # embeddings: each group's prompt once (media in its placeholders), completions as plain tokens
    prompt_ids = input_ids[first_t, :width]
    prompt_inputs = lm_inputs(thinker, prompt_ids, group_rows, use_cache=encoders_frozen, prompt_width=width,
                              run_all_towers=run_all_towers)
    prompt_embeds = prompt_inputs["inputs_embeds"]
    # the family's extra inputs (Qwen3-Omni's DeepStack video features) go with the prefix: media live there only
    prefix_inputs = take_columns(prompt_inputs, slice(None, width - 1))
    completion_embeds = thinker.get_input_embeddings()(input_ids[:, width:length - 1])
    suffix_embeds = torch.cat([prompt_embeds[:, width - 1:width].index_select(0, index),
                               completion_embeds.to(prompt_embeds.dtype)], dim=1)
    positions = rope_positions(thinker, attention_mask, rows, width)  # (3, B, L)
    labels = input_ids[:, width:].masked_fill(attention_mask[:, width:] == 0, -100)

    with autocast:
        prefix = thinker.model(**prefix_inputs,
                               attention_mask=attention_mask[first_t, :width - 1],
                               position_ids=positions[:, first_t, :width - 1], use_cache=True)
        cache = prefix.past_key_values
        if len(first) != batch or first != list(range(batch)):
            cache.batch_select_indices(index)  # rows' copies of their group's cache, in the autograd graph
        outputs = model(inputs_embeds=suffix_embeds, attention_mask=attention_mask[:, :length - 1],
                        position_ids=positions[:, :, width - 1:length - 1], past_key_values=cache,
                        shift_labels=labels, fused_lm_head=True)
    entropy = outputs.entropy if compute_entropy else None
    return outputs.log_probs, entropy
