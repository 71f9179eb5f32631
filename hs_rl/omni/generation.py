"""Sampling or greedy decoding from a batch of `PromptMedia` rows, mixed modalities and repeated prompts alike.

Used by GRPO rollouts (G rows per prompt) and by benchmark evaluation (one row per question): each distinct
prompt is prefilled once with our per-row embeddings and 3-D rope positions, its KV cache is indexed out to
its rows, and one transformers `generate` call decodes every row together.

Under ZeRO-3 / FSDP with several processes every module call is a collective, so every process must make the
same calls: one prefill per `generate_rows` call (all distinct prompts in one batch, however many there are),
both towers in it with `run_all_towers` (hs_rl.omni.inputs.encode_media), and with `synced_gpus` as many
decode steps as the process that stops last (transformers keeps a finished process stepping; TRL relies on the
same). A process's own count of prompts, modalities or stop tokens never changes how many calls it makes.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from hs_rl.data.prompt_media import PromptMedia
from hs_rl.omni.families import multimodal_model
from hs_rl.omni.inputs import lm_inputs, prompt_groups, prompt_rope, rope_positions


def prefill_rows(thinker, rows: list[PromptMedia], pad_id: int, *, encoders_frozen: bool = True,
                 run_all_towers: bool = False) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """Left-pad the rows' prompts, run all but their last column once per distinct prompt, set rope deltas.

    Returns (input_ids, attention_mask, cache) ready for `thinker.generate(..., past_key_values=cache)`; the
    caller resets `multimodal_model(thinker).rope_deltas` to None afterwards.
    """
    device = thinker.get_input_embeddings().weight.device
    rows = [row.to(device) for row in rows]
    first, group_of_row = prompt_groups(rows)
    width = max(row.input_ids.numel() for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros_like(input_ids)
    for b, row in enumerate(rows):
        input_ids[b, width - row.input_ids.numel():] = row.input_ids
        mask[b, width - row.input_ids.numel():] = 1
    firsts = torch.tensor(first, device=device)
    group_rows = [rows[i] for i in first]
    inputs = lm_inputs(thinker, input_ids[firsts], group_rows, use_cache=encoders_frozen, prompt_width=width,
                       run_all_towers=run_all_towers, columns=slice(None, -1))
    positions = rope_positions(thinker, mask[firsts], group_rows, width)
    prefill = thinker.model(**inputs, position_ids=positions[:, :, :-1], attention_mask=mask[firsts, :-1],
                            use_cache=True)
    cache = prefill.past_key_values
    if len(first) != len(rows):
        cache.batch_select_indices(torch.tensor(group_of_row, device=device))
    # Decode positions are mask.cumsum()-1 + rope_deltas: the cumsum skips left padding, so no pad correction.
    multimodal_model(thinker).rope_deltas = torch.tensor([[prompt_rope(thinker, row)[1]] for row in rows],
                                                          device=device)
    return input_ids, mask, cache


@torch.no_grad()
def generate_rows(thinker, rows: list[PromptMedia], generation_config, stop_ids: Iterable[int], *,
                  encoders_frozen: bool = True, run_all_towers: bool = False,
                  synced_gpus: bool | None = None) -> list[list[int]]:
    """Each row's new tokens, up to and including its first stop token (all of them if none came).

    `synced_gpus`: decode until every process's rows have stopped (None: transformers' own rule, on under
    ZeRO-3 or FSDP with several processes)."""
    input_ids, mask, cache = prefill_rows(thinker, rows, generation_config.pad_token_id or 0,
                                          encoders_frozen=encoders_frozen, run_all_towers=run_all_towers)
    try:
        sequences = thinker.generate(input_ids=input_ids, attention_mask=mask, past_key_values=cache,
                                     generation_config=generation_config, synced_gpus=synced_gpus)
    finally:
        multimodal_model(thinker).rope_deltas = None  # never leak this batch's deltas into a later forward
    stops = set(stop_ids)
    return [tokens[: next((i + 1 for i, t in enumerate(tokens) if t in stops), len(tokens))]
            for tokens in sequences[:, input_ids.shape[1]:].tolist()]
