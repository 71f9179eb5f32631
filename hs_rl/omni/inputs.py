"""Per-prompt model inputs of the Omni thinker, and the two things every forward pass needs from them.

A `PromptMedia` (hs_rl.data.prompt_media) is what the processor made of ONE prompt (its token ids with media
placeholders expanded, and that prompt's video patches / audio features). Keeping media per prompt, never flattened
across a batch, is what lets each sample keep its own modality in a mixed batch and lets any slice of rows find
its own media.

`lm_inputs` and `rope_positions` turn a batch of rows into the thinker's inputs (`inputs_embeds`, and a family's
extra visual inputs such as Qwen3-Omni's DeepStack embeddings) and its 3-D rope `position_ids`; generation,
old/reference log-probs and the loss forward all go through them, so they cannot disagree about what the model
saw (`embed_rows` is `lm_inputs`' `inputs_embeds` alone).
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch

from hs_rl.data.prompt_media import PromptMedia
from hs_rl.omni.families import family_of, multimodal_model


def thinker_of(model: torch.nn.Module) -> torch.nn.Module:
    """The Omni thinker inside whatever wraps it (DDP, DeepSpeed engine, PEFT)."""
    while True:
        if hasattr(model, "get_base_model") and model.__class__.__name__.startswith("Peft"):
            model = model.get_base_model()
        elif hasattr(model, "module") and not hasattr(model, "visual") and not hasattr(model, "audio_tower") \
                and not hasattr(model, "lm_head"):
            model = model.module
        else:
            return model


def prompt_groups(rows: list[PromptMedia]) -> tuple[list[int], list[int]]:
    """(first row index of each group, group index of each row); rows sharing one `PromptMedia` are a group."""
    first: list[int] = []
    where: dict[int, int] = {}
    group_of_row = []
    for i, row in enumerate(rows):
        if id(row) not in where:
            where[id(row)] = len(first)
            first.append(i)
        group_of_row.append(where[id(row)])
    return first, group_of_row


def encode_media(thinker, rows: list[PromptMedia], *, use_cache: bool,
                 run_all_towers: bool) -> tuple[list[dict], torch.Tensor | None]:
    """Video and audio encoder outputs of each distinct row, as {"video": (n, H), "audio": (m, H)} plus, for a
    family with DeepStack, {"deepstack": [(n, H) per injected LM layer]}.

    With `use_cache` (encoders frozen) a prompt is encoded once and its outputs are reused by every row of
    its group and every forward pass of the step. With `run_all_towers` each tower runs exactly once per call,
    on a dummy input when no row (or no uncached row) needs it: what runs then depends on no process's own
    rows. The trainer turns it on wherever that matters (several processes with ZeRO-3/FSDP, where a tower's
    forward is a gather all ranks join, or with a trained tower, whose gradients every rank must reduce:
    hs_rl.grpo.trainer). Without it a tower runs only for rows that need it, which is safe only for frozen,
    replicated towers.
    """
    family = family_of(thinker)
    distinct = list({id(r): r for r in rows}.values())
    todo = [r for r in distinct if not (use_cache and "encoded" in r.cache)]
    video_rows = [r for r in todo if r.has_video]
    audio_rows = [r for r in todo if r.has_audio]
    results: dict[int, dict[str, list]] = {id(r): {} for r in todo}
    dummies: list[torch.Tensor] = []
    # frozen towers never need a graph; trainable ones follow the caller (no graph inside a no-grad pass)
    context = torch.no_grad() if use_cache else contextlib.nullcontext()
    with context:
        if video_rows or run_all_towers:
            pixels, grids, owners = _video_batch(video_rows, thinker)
            pooled, deepstack = family.encode_video(thinker, pixels, grids)
            for i, (owner, feat) in enumerate(zip(owners, pooled)):
                layers = deepstack[i] if deepstack is not None else []
                if owner is None:
                    dummies.append(feat.sum() + sum(layer.sum() for layer in layers))
                else:
                    results[id(owner)].setdefault("video", []).append(feat)
                    if deepstack is not None:
                        results[id(owner)].setdefault("deepstack", []).append(layers)
        if audio_rows or run_all_towers:
            feats, mask, owners = _audio_batch(audio_rows, thinker)
            for owner, part in zip(owners, family.encode_audio(thinker, feats, mask)):
                if owner is None:
                    dummies.append(part.sum())
                else:
                    results[id(owner)].setdefault("audio", []).append(part)
    for row in todo:
        encoded = {k: torch.cat(v) for k, v in results[id(row)].items() if k != "deepstack"}
        if "deepstack" in results[id(row)]:  # per video, per layer → per layer, all the row's videos
            encoded["deepstack"] = [torch.cat(layer) for layer in zip(*results[id(row)]["deepstack"])]
        if use_cache:
            row.cache["encoded"] = encoded
        else:
            row.cache["encoded_fresh"] = encoded
    key = "encoded" if use_cache else "encoded_fresh"
    out = [r.cache[key] for r in rows]
    if not use_cache:
        for r in distinct:
            r.cache.pop("encoded_fresh", None)
    return out, (torch.stack(dummies).sum() if dummies else None)


def _video_batch(rows: list[PromptMedia], thinker):
    """Concatenate the rows' video patches; a 1-frame dummy stands in when none (ZeRO-3 lock-step)."""
    if rows:
        owners = [r for r in rows for _ in range(r.video_grid_thw.shape[0])]
        return (torch.cat([r.pixel_values_videos for r in rows]), torch.cat([r.video_grid_thw for r in rows]),
                owners)
    vc = thinker.config.vision_config
    merge = vc.spatial_merge_size
    dim = vc.in_channels * vc.temporal_patch_size * vc.patch_size ** 2
    device = thinker.get_input_embeddings().weight.device
    return (torch.zeros(merge * merge, dim, device=device), torch.tensor([[1, merge, merge]], device=device), [None])


def _audio_batch(rows: list[PromptMedia], thinker):
    """Pad the rows' audio features to one length; a short silent dummy stands in when none."""
    device = thinker.get_input_embeddings().weight.device
    if not rows:
        mels = thinker.config.audio_config.num_mel_bins
        return torch.zeros(1, mels, 100, device=device), torch.ones(1, 100, dtype=torch.long, device=device), [None]
    length = max(r.input_features.shape[-1] for r in rows)
    feats, masks, owners = [], [], []
    for r in rows:
        pad = length - r.input_features.shape[-1]
        feats.append(torch.nn.functional.pad(r.input_features, (0, pad)))
        masks.append(torch.nn.functional.pad(r.feature_attention_mask, (0, pad)))
        owners += [r] * r.input_features.shape[0]
    return torch.cat(feats), torch.cat(masks), owners


def lm_inputs(thinker, input_ids: torch.Tensor, rows: list[PromptMedia], *, use_cache: bool,
              prompt_width: int | None = None, run_all_towers: bool = False, columns: slice | None = None
              ) -> dict[str, Any]:
    """Everything the thinker's LM forward takes for a (B, L) batch besides positions and mask: `inputs_embeds`
    with each row's own video/audio features in its placeholders, plus what the family adds (Qwen3-Omni's
    DeepStack features, see hs_rl.omni.families.qwen3_omni).

    Only the first `prompt_width` columns (the left-padded prompts) hold media: a completion that happens to
    contain a placeholder token id is embedded as the plain token it is. `columns` keeps only those columns
    of the result (a prefill leaves out the prompts' last token); they must hold all of the media.
    """
    config = thinker.config
    media_ids = input_ids
    if prompt_width is not None and prompt_width < input_ids.shape[1]:
        media_ids = input_ids.clone()
        tail = media_ids[:, prompt_width:]
        for token_id in (config.video_token_id, config.audio_token_id, config.image_token_id):
            tail[tail == token_id] = -1  # not a placeholder, whatever its id
    embeds = thinker.get_input_embeddings()(input_ids)
    encoded, dummy = encode_media(thinker, rows, use_cache=use_cache, run_all_towers=run_all_towers)
    if dummy is not None and not use_cache:  # trainable towers: every rank's backward must reach them
        embeds = embeds + 0.0 * dummy.to(embeds.dtype)
    for kind, token_id in (("video", config.video_token_id), ("audio", config.audio_token_id)):
        mask = media_ids == token_id
        feats = [e[kind] for e in encoded if kind in e]
        expected = int(mask.sum())
        if not feats:
            if expected:
                raise ValueError(f"{expected} <{kind}> placeholder tokens but no {kind} features in the batch")
            continue
        feats = torch.cat(feats).to(embeds.dtype)
        if feats.shape[0] != expected:
            raise ValueError(f"{expected} <{kind}> placeholder tokens but {feats.shape[0]} {kind} features")
        embeds = embeds.masked_scatter(mask.unsqueeze(-1), feats)
    # blanked placeholders must not look like media to the thinker either: they become the pad id there
    lm_ids = media_ids.masked_fill(media_ids < 0, getattr(config, "pad_token_id", None) or 0)
    inputs = {"inputs_embeds": embeds, **family_of(thinker).forward_extras(thinker, lm_ids, encoded)}
    return take_columns(inputs, columns) if columns is not None else inputs


def take_columns(inputs: dict[str, Any], columns: slice) -> dict[str, Any]:
    """The `lm_inputs` of some columns only (the media must all lie inside them)."""
    return {key: value[:, columns] if key in ("inputs_embeds", "input_ids", "visual_pos_masks") else value
            for key, value in inputs.items()}


def embed_rows(thinker, input_ids: torch.Tensor, rows: list[PromptMedia], *, use_cache: bool,
               prompt_width: int | None = None, run_all_towers: bool = False) -> torch.Tensor:
    """`inputs_embeds` alone (enough for a family without DeepStack; `lm_inputs` gives the whole set)."""
    return lm_inputs(thinker, input_ids, rows, use_cache=use_cache, prompt_width=prompt_width,
                     run_all_towers=run_all_towers)["inputs_embeds"]


def prompt_rope(thinker, row: PromptMedia) -> tuple[torch.Tensor, int | float]:
    """3-D rope positions (3, P) of one prompt and its delta (next text position minus P), cached on the row."""
    if "rope" not in row.cache:
        ids = row.input_ids[None]
        audio_lengths = row.feature_attention_mask.sum(-1) if row.has_audio else None
        positions, delta = multimodal_model(thinker).get_rope_index(
            ids, None, row.video_grid_thw, torch.ones_like(ids), row.use_audio_in_video, audio_lengths,
            row.video_second_per_grid,
        )
        # Qwen2.5-Omni's positions are integers; Qwen3-Omni's are float (fractional video times): keep the dtype
        row.cache["rope"] = (positions[:, 0], delta.reshape(-1)[0].item())
    return row.cache["rope"]


def rope_positions(thinker, attention_mask: torch.Tensor, rows: list[PromptMedia], prompt_width: int) -> torch.Tensor:
    """(3, B, L) positions for left-padded prompts of width `prompt_width` followed by right-padded completions.

    The prompt part comes from each row's own rope (its own `use_audio_in_video` and fps); completion tokens
    are text, so they continue from the prompt's next position. Padding gets position 1 (masked anyway).
    """
    batch, length = attention_mask.shape
    ropes = [prompt_rope(thinker, row) for row in rows]
    dtype = torch.long
    for prompt_pos, _ in ropes:
        dtype = torch.promote_types(dtype, prompt_pos.dtype)
    positions = torch.ones(3, batch, length, dtype=dtype, device=attention_mask.device)
    for b, (prompt_pos, delta) in enumerate(ropes):
        p = prompt_pos.shape[-1]
        positions[:, b, prompt_width - p:prompt_width] = prompt_pos.to(positions.device)
        tail = length - prompt_width
        if tail > 0:
            start = p + delta
            positions[:, b, prompt_width:] = torch.arange(tail, device=positions.device, dtype=dtype) + start
    return positions
