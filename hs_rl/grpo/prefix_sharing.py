"""Packed groups: a group's prompt runs once through the language model, its completions attend to it.

In GRPO the G completions of a prompt share that prompt token for token, and the prompt (video + audio
placeholders, thousands of tokens) is 5–20× longer than a completion. The plain forward runs every row's
prompt again, G times per group, in each of the old/reference/loss passes. Here a micro-batch becomes ONE
packed sequence, group after group:

    [prompt_1 minus last token][last_1, c_1,1 …][last_1, c_1,2 …] … [prompt_2 minus last token][last_2, c_2,1 …] …

- each *segment* is a row's prompt-last token followed by its completion minus the last completion token: its
  hidden states score exactly the row's completion tokens (the prompt's last token is repeated once per row,
  G - 1 extra tokens, so that the LM head sees one label per position);
- attention: the prompt is causal; a segment sees its group's whole prompt and its own earlier tokens only,
  never another row's completion nor another group (`packed_mask_function`);
- 3-D rope positions: every token keeps the position it has in its own unpacked row (a segment continues from
  its prompt's end exactly as the row does), taken from `rope_positions`;
- padding is left out of the sequence (a padded completion column gets log-prob 0, as TRL masks it anyway).

The pattern goes into the model as transformers' own precomputed mask mapping
(`attention_mask={"full_attention": mask}`), built by the mask function of whatever attention implementation
the model uses (`masking_utils`: a 4-D boolean mask for `sdpa`, an additive one for `eager`, a block-sparse
`BlockMask` for `flex_attention`). Nothing else changes: the wrapped model (DDP, DeepSpeed engine, PeftModel)
is called once per micro-batch with `inputs_embeds`, `position_ids` and TRL's fused LM head, so gradient
checkpointing (the mask is an ordinary layer argument, replayed as is), ZeRO-2/3 (one forward on every rank,
both towers run by `embed_rows` as before) and PEFT work as in the plain path. No KV cache is involved.

The packed path calls the input embedding twice (the groups' prompts, then the completions), the plain path
once: under ZeRO-3 each call is a parameter gather every process must join, so whether a micro-batch packs is
decided for all processes together (`OmniGRPOTrainer._packs`: packed only when every process's micro-batch is
whole groups), never by one process's rows alone.

Cost: the language model sees P + G·C tokens per group instead of G·(P + C). Attention with a dense mask
(`sdpa`, `eager`) still computes the masked blocks (T² for T packed tokens); `flex_attention` skips them.

Falls back to the plain path (the caller logs it once) for attention implementations that take no custom mask
(flash-attention) and models with sliding-window layers (their second mask is not built here),
a family whose LM forward takes extra inputs (Qwen3-Omni's DeepStack features, laid out per padded row, not
per packed token) and a MoE router auxiliary loss (a prompt's router logits would count once per group).
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any

import torch
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, and_masks, causal_mask_function

from hs_rl.data.prompt_media import PromptMedia
from hs_rl.omni.families import language_backbone
from hs_rl.omni.inputs import embed_rows, prompt_groups, rope_positions

logger = logging.getLogger(__name__)

MASKED_IMPLEMENTATIONS = ("sdpa", "eager", "flex_attention")


def unsafe_reason(trainer: Any) -> str | None:
    """Why the packed forward cannot be used with this trainer's model, or None when it can."""
    from hs_rl.omni.families import Family, family_of
    from hs_rl.omni.inputs import thinker_of

    thinker = thinker_of(trainer.accelerator.unwrap_model(trainer.model))
    family = family_of(thinker)
    if type(family).forward_extras is not Family.forward_extras:
        return (f"{family.name}: the LM forward takes extra inputs (DeepStack visual features added to the first "
                "layers' hidden states at the prompt's video positions), not laid out for the packed sequence yet")
    if getattr(trainer, "aux_loss_enabled", False):
        return ("the MoE router auxiliary loss is on (router_aux_loss_coef): the packed forward would count a "
                "prompt's router logits once per group instead of once per row")
    text_config = thinker.config.get_text_config()
    implementation = text_config._attn_implementation
    if implementation not in MASKED_IMPLEMENTATIONS:
        return (f"attention implementation {implementation!r} takes no custom mask (packed groups need one of "
                f"{', '.join(MASKED_IMPLEMENTATIONS)})")
    if getattr(text_config, "use_sliding_window", False) and "sliding_attention" in (text_config.layer_types or ()):
        return "the language model has sliding-window layers (the packed mask is built for full attention only)"
    return None


def splits_a_group(rows: list[PromptMedia], group_size: int) -> bool:
    """True when some prompt of this micro-batch has fewer than `group_size` of its rows here."""
    counts: dict[int, int] = {}
    for row in rows:
        counts[id(row)] = counts.get(id(row), 0) + 1
    return any(count != group_size for count in counts.values())


def packed_mask_function(group: torch.Tensor, segment: torch.Tensor) -> Any:
    """Index-based mask function (transformers' convention) of the packed layout, to be AND-ed with causal.

    `group[t]`: which prompt token t belongs to; `segment[t]`: 0 for prompt tokens, 1 + row for a row's segment.
    A query sees keys of its own group that are prompt tokens or tokens of its own segment.
    """
    def allowed(batch_idx, head_idx, q_idx, kv_idx):
        same_group = group[q_idx] == group[kv_idx]
        return same_group & ((segment[kv_idx] == 0) | (segment[kv_idx] == segment[q_idx]))

    return allowed


def packed_attention_mask(text_config, group: torch.Tensor, segment: torch.Tensor, dtype: torch.dtype):
    """The (1, 1, T, T) mask (or BlockMask) for the model's attention implementation."""
    length = group.numel()
    mask_interface = ALL_MASK_ATTENTION_FUNCTIONS[text_config._attn_implementation]
    return mask_interface(
        batch_size=1, q_length=length, kv_length=length, q_offset=0, kv_offset=0,
        mask_function=and_masks(causal_mask_function, packed_mask_function(group, segment)),
        attention_mask=None, allow_is_causal_skip=False, dtype=dtype, config=text_config, use_vmap=False,
        device=group.device,
    )


def completion_masks_are_prefixes(attention_mask: torch.Tensor, width: int) -> bool:
    """True when every row's completion mask is ones then zeros (TRL's: tokens up to EOS), as packing assumes."""
    tail = attention_mask[:, width:].bool()
    return bool((tail.long().cummin(dim=1).values.bool() == tail).all())


def pack_groups(input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: list[PromptMedia], width: int,
                positions: torch.Tensor) -> dict[str, torch.Tensor]:
    """Index plan of the packed sequence for a (B, L) micro-batch with left-padded prompts of width `width`.

    Returns, per packed token t: `source_row`/`source_col` (where its embedding and position come from in the
    unpacked batch), `group`, `segment`, `label` (the token its hidden state scores, or -100), and for the
    scored tokens `scored` (their packed index) with `out_row`/`out_col` (where their log-prob goes in the
    (B, L - width) result). Completion masks must be prefixes (`completion_masks_are_prefixes`).
    """
    first, group_of_row = prompt_groups(rows)
    batch, length = input_ids.shape
    prompt_lengths = attention_mask[:, :width].sum(-1).tolist()
    completion_lengths = attention_mask[:, width:].sum(-1).tolist()
    src_row, src_col, grp, seg, out_row, out_col, scored = [], [], [], [], [], [], []
    label_parts, total = [], 0
    for g, head in enumerate(first):
        prompt_len = int(prompt_lengths[head])
        if prompt_len < 1:
            raise ValueError(f"row {head}: empty prompt")
        n = prompt_len - 1  # the prompt minus its last token
        src_row += [head] * n
        src_col += range(width - prompt_len, width - 1)
        grp += [g] * n
        seg += [0] * n
        label_parts.append(torch.full((n,), -100, dtype=torch.long, device=input_ids.device))
        total += n
        for b in (r for r in range(batch) if group_of_row[r] == g):
            n = int(completion_lengths[b])  # the prompt's last token + completion[:n-1] score completion[:n]
            scored += range(total, total + n)
            out_row += [b] * n
            out_col += range(n)
            src_row += [b] * n
            src_col += range(width - 1, width - 1 + n)
            grp += [g] * n
            seg += [1 + b] * n
            label_parts.append(input_ids[b, width:width + n])
            total += n
    device = input_ids.device
    as_tensor = lambda values: torch.tensor(values, dtype=torch.long, device=device)  # noqa: E731
    plan = {name: as_tensor(values) for name, values in (
        ("source_row", src_row), ("source_col", src_col), ("group", grp), ("segment", seg),
        ("out_row", out_row), ("out_col", out_col), ("scored", scored))}
    plan["label"] = torch.cat(label_parts)
    plan["positions"] = positions[:, plan["source_row"], plan["source_col"]][:, None]  # (3, 1, T)
    return plan


def shared_prefix_logps(model: torch.nn.Module, thinker: torch.nn.Module, input_ids: torch.Tensor,
                        attention_mask: torch.Tensor, rows: list[PromptMedia], logits_to_keep: int, *,
                        encoders_frozen: bool, run_all_towers: bool, compute_entropy: bool,
                        autocast=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs (and entropies) of the last `logits_to_keep` columns of a (B, L) micro-batch.

    `input_ids` / `attention_mask` are TRL's: left-padded prompts of width P = L - logits_to_keep followed by
    right-padded completions. `model` is what the plain path calls (wrapped, with TRL's fused LM head added);
    `thinker` is the unwrapped thinker inside it. Equal to the plain path's result to float tolerance on every
    unmasked completion column (masked columns are 0).
    """
    batch, length = input_ids.shape
    width = length - logits_to_keep
    if width < 1:
        raise ValueError("packed groups need prompts of at least one token")
    first, _ = prompt_groups(rows)
    positions = rope_positions(thinker, attention_mask, rows, width)  # (3, B, L), as the plain path has them
    plan = pack_groups(input_ids, attention_mask, rows, width, positions)
    autocast = autocast if autocast is not None else contextlib.nullcontext()

    # embeddings: each group's prompt once (media in its placeholders), completions as plain tokens
    first_t = torch.tensor(first, device=input_ids.device)
    prompt_embeds = embed_rows(thinker, input_ids[first_t, :width], [rows[i] for i in first],
                               use_cache=encoders_frozen, prompt_width=width, run_all_towers=run_all_towers)
    token_embeds = thinker.get_input_embeddings()(input_ids[:, width:]).to(prompt_embeds.dtype)
    slot_of_row = torch.zeros(batch, dtype=torch.long, device=input_ids.device)
    slot_of_row[first_t] = torch.arange(len(first), device=input_ids.device)
    _, group_of_row = prompt_groups(rows)
    group_of_row = torch.tensor(group_of_row, device=input_ids.device)
    # one table to gather from: (groups' prompt columns) then (rows' completion columns)
    table = torch.cat([prompt_embeds.reshape(-1, prompt_embeds.size(-1)),
                       token_embeds.reshape(-1, token_embeds.size(-1))])
    src_row, src_col = plan["source_row"], plan["source_col"]
    in_prompt = src_col < width
    index = torch.where(in_prompt, group_of_row[src_row] * width + src_col,
                        len(first) * width + src_row * logits_to_keep + (src_col - width).clamp(min=0))
    packed = table.index_select(0, index)[None]  # (1, T, H)

    text_config = thinker.config.get_text_config()
    mask = packed_attention_mask(text_config, plan["group"], plan["segment"], packed.dtype)
    with autocast, language_backbone(thinker):  # TRL's fused head: a head-less backbone
        outputs = model(inputs_embeds=packed, attention_mask={"full_attention": mask},
                        position_ids=plan["positions"], shift_labels=plan["label"][None], fused_lm_head=True)
    where = (plan["out_row"], plan["out_col"])
    scored = plan["scored"]

    def unpack(values: torch.Tensor) -> torch.Tensor:
        out = values.new_zeros(batch, logits_to_keep)
        return out.index_put(where, values[0].index_select(0, scored))

    logps = unpack(outputs.log_probs)
    entropy = unpack(outputs.entropy) if compute_entropy else None
    return logps, entropy
