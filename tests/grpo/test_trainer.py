"""OmniGRPOTrainer on the tiny model: real media, processor, TRL step, log-prob agreement, media sensitivity."""
from __future__ import annotations

import json

import pytest
import torch

from hs_rl.train import build_trainer
from tests.grpo.trainer_helpers import interleaved, parameter_parts, sample_records, stage_args


@pytest.fixture(scope="module")
def records(sample_data):
    return sample_records(sample_data)


def _lm_params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("modalities", [("video",), ("audio",), ("video_audio",), ("video", "audio", "video_audio")])
def test_one_grpo_step_changes_weights_and_rewards_vary(omni_model, records, tmp_path, modalities):
    chosen = interleaved(records, modalities, count=6)
    trainer = build_trainer(*stage_args(omni_model["full"], chosen, tmp_path, per_device_train_batch_size=9,
                                        num_generations=3))
    before = _lm_params(trainer.model)
    trainer.train()
    after = _lm_params(trainer.model)
    changed = [n for n in before if not torch.equal(before[n], after[n])]
    parts = parameter_parts(trainer.model)
    assert any(parts[n] == "language" for n in changed), "no language-model weight changed"
    assert not any(parts[n] in ("vision", "audio") for n in changed), "frozen encoders changed"
    lines = [json.loads(x) for x in (tmp_path / "completions.jsonl").read_text().splitlines()]
    assert len(lines) == 9
    seen = {x["id"] for x in lines}
    assert {r.modality for r in chosen if r.id in seen} == set(modalities)
    by_group: dict[str, list[float]] = {}
    for line in lines:
        by_group.setdefault(line["id"], []).append(line["rewards"]["char_diversity"])
    assert any(len(set(v)) > 1 for v in by_group.values()), "rewards never varied inside a group"


def _reference_logps(thinker, row, completion: list[int], temperature: float) -> torch.Tensor:
    """Log-probs of `completion` after `row`'s prompt from transformers' own forward with the raw media."""
    ids = torch.cat([row.input_ids, torch.tensor(completion, dtype=torch.long)])[None]
    kwargs = {k: getattr(row, k) for k in ("pixel_values_videos", "video_grid_thw", "video_second_per_grid",
                                           "input_features", "feature_attention_mask") if getattr(row, k) is not None}
    with torch.no_grad():
        logits = thinker(input_ids=ids, attention_mask=torch.ones_like(ids), use_audio_in_video=row.use_audio_in_video,
                         **kwargs).logits[0]
    p = row.input_ids.numel()
    logps = torch.log_softmax(logits[p - 1:-1] / temperature, dim=-1)
    return logps.gather(-1, torch.tensor(completion)[:, None])[:, 0]


@pytest.fixture(scope="module")
def buffered(omni_model, records, tmp_path_factory):
    """A trainer that generated one mixed batch (steps_per_generation=2: shuffled and split like in training),
    for each family."""
    out = tmp_path_factory.mktemp("buffered")
    chosen = interleaved(records, count=8)
    trainer = build_trainer(*stage_args(omni_model["full"], chosen, out, per_device_train_batch_size=4,
                                        num_generations=2, steps_per_generation=2, beta=0.1, temperature=0.7))
    trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    trainer._prepare_inputs(batch)
    return trainer


def _rows_logps(trainer, micro):
    ids = torch.cat([micro["prompt_ids"], micro["completion_ids"]], dim=1)
    mask = torch.cat([micro["prompt_mask"], micro["completion_mask"]], dim=1)
    trainer._rows = micro["media"]
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask,
                                                                 micro["completion_ids"].size(1))
    return logps


def test_logps_agree_with_per_sample_forward(buffered):
    trainer = buffered
    thinker = trainer.accelerator.unwrap_model(trainer.model)
    modalities_seen = set()
    for micro in trainer._buffered_inputs:
        policy = _rows_logps(trainer, micro)
        for i, row in enumerate(micro["media"]):
            modalities_seen.add((row.has_video, row.has_audio, row.use_audio_in_video))
            valid = micro["completion_mask"][i].bool()
            completion = micro["completion_ids"][i][valid].tolist()
            reference = _reference_logps(thinker, row, completion, trainer.temperature)
            torch.testing.assert_close(policy[i][valid], reference, atol=1e-4, rtol=1e-4)
            # old and reference log-probs were computed on the whole generation batch before the shuffle
            torch.testing.assert_close(micro["old_per_token_logps"][i][valid], reference, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(micro["ref_per_token_logps"][i][valid], reference, atol=1e-4, rtol=1e-4)
    assert len(modalities_seen) == 3, f"the batch did not mix the three modalities: {modalities_seen}"


def _perturbed(row, attr: str):
    from dataclasses import replace

    clone = replace(row, cache={})
    setattr(clone, attr, getattr(row, attr) + 0.5 * torch.randn_like(getattr(row, attr)))
    return clone


@pytest.mark.parametrize("attr", ["pixel_values_videos", "input_features"])
def test_changing_media_changes_loss_forward_logps(buffered, attr):
    trainer = buffered
    micro = next(m for m in trainer._buffered_inputs if any(getattr(r, attr) is not None for r in m["media"]))
    base = _rows_logps(trainer, micro)
    target = next(i for i, r in enumerate(micro["media"]) if getattr(r, attr) is not None)
    original = micro["media"]
    try:
        micro["media"] = [(_perturbed(r, attr) if i == target else r) for i, r in enumerate(original)]
        moved = _rows_logps(trainer, micro)
    finally:
        micro["media"] = original
    valid = micro["completion_mask"][target].bool()
    # the tiny audio tower moves the log-probs by ~1e-4 only; unchanged media reproduces them to ~1e-7
    assert not torch.allclose(base[target][valid], moved[target][valid], rtol=0, atol=1e-6), \
        f"{attr} did not reach the loss forward"
    others = [i for i, r in enumerate(original) if r is not original[target]]
    for i in others:
        torch.testing.assert_close(base[i], moved[i])


def test_deepstack_features_reach_the_loss_forward(buffered):
    """Qwen3-Omni: moving only a video's cached DeepStack features (pooled features untouched) moves that row's
    loss-forward log-probs, and no other row's."""
    from hs_rl.omni.families import family_of

    trainer = buffered
    if family_of(trainer.accelerator.unwrap_model(trainer.model)).name != "qwen3_omni":
        pytest.skip("Qwen2.5-Omni has no DeepStack features")
    micro = next(m for m in trainer._buffered_inputs if any(r.has_video for r in m["media"]))
    base = _rows_logps(trainer, micro)
    target = next(i for i, r in enumerate(micro["media"]) if r.has_video)
    row = micro["media"][target]
    encoded = row.cache["encoded"]  # frozen encoders: what every forward of the step reuses
    saved = encoded["deepstack"]
    try:
        encoded["deepstack"] = [layer + torch.randn_like(layer) for layer in saved]
        moved = _rows_logps(trainer, micro)
    finally:
        encoded["deepstack"] = saved
    valid = micro["completion_mask"][target].bool()
    assert not torch.allclose(base[target][valid], moved[target][valid], rtol=0, atol=1e-6), \
        "DeepStack features did not reach the loss forward"
    for i, other in enumerate(micro["media"]):
        if other is not row:
            torch.testing.assert_close(base[i], moved[i])
    torch.testing.assert_close(_rows_logps(trainer, micro), base)


def test_moe_aux_loss_is_logged_and_experts_can_be_frozen(tiny_qwen3_model, records, tmp_path):
    """Qwen3-Omni's router load-balancing loss (TRL's compute_aux_loss) is logged; freeze_experts keeps the
    expert weights while attention and routers train."""
    trainer = build_trainer(*stage_args(tiny_qwen3_model["full"], interleaved(records, count=2), tmp_path,
                                        freeze_experts=True, router_aux_loss_coef=0.01))
    before = _lm_params(trainer.model)
    trainer.train()
    after = _lm_params(trainer.model)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    experts = {n for n in before if ".mlp.experts." in n}
    assert experts and not experts & changed, "frozen experts changed"
    assert any(".mlp.gate." in n for n in changed) and any("self_attn" in n for n in changed)
    logged = [h["aux_loss"] for h in trainer.state.log_history if "aux_loss" in h]
    assert logged and all(v > 0 for v in logged), trainer.state.log_history


def test_saved_model_reloads(tiny_model, records, tmp_path):
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    trainer = build_trainer(*stage_args(tiny_model["full"], interleaved(records, count=4), tmp_path))
    trainer.train()
    trainer.save_model(str(tmp_path))
    reloaded = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(tmp_path)
    trained = trainer.accelerator.unwrap_model(trainer.model).state_dict()
    for name, tensor in reloaded.state_dict().items():
        torch.testing.assert_close(tensor, trained[name], msg=name)


def test_a_policy_given_as_a_path_is_loaded_from_that_path(tiny_model, records, tmp_path):
    """TRL loads a policy given as a path through the same `create_model_from_path` hs-rl patches for the
    reference: that load must read the policy's own folder (as the family's thinker), never
    `ref_model_name_or_path`, and the reference must still be the other folder."""
    from hs_rl.grpo.trainer import OmniGRPOTrainer
    from hs_rl.omni.inputs import thinker_of
    from hs_rl.omni.loading import load_thinker

    other = load_thinker(tiny_model["full"], dtype="float32")
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(0.05)
    other.save_pretrained(tmp_path / "other")
    built = build_trainer(*stage_args(tiny_model["full"], records[:4], tmp_path / "run", beta=0.1,
                                      ref_model_name_or_path=str(tmp_path / "other")))
    built.args.model_init_kwargs = {"dtype": torch.float32}
    trainer = OmniGRPOTrainer(model=str(tiny_model["full"]), reward_funcs=built.reward_funcs, args=built.args,
                              train_dataset=built.train_dataset, processing_class=built.processing_class)
    start = dict(thinker_of(load_thinker(tiny_model["full"], dtype="float32")).named_parameters())
    policy = thinker_of(trainer.accelerator.unwrap_model(trainer.model))
    assert type(policy).__name__ == type(thinker_of(built.model)).__name__
    for name, parameter in policy.named_parameters():
        torch.testing.assert_close(parameter, start[name], msg=name)
    moved = dict(other.named_parameters())
    for name, parameter in trainer.ref_model.named_parameters():
        torch.testing.assert_close(parameter, moved[name], msg=name)


def test_kl_reference_can_be_another_model(tiny_model, tiny_qwen3_model, records, tmp_path):
    """`ref_model_name_or_path`: the KL term's reference is that folder's thinker, towers included (the policy's
    cached encoder outputs are not its own), not the stage's starting model. Misuse fails early."""
    from hs_rl.omni.inputs import thinker_of
    from hs_rl.omni.loading import load_thinker

    other = load_thinker(tiny_model["full"], dtype="float32")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in other.parameters():  # every weight moves, the frozen towers' too
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    other.save_pretrained(tmp_path / "other")
    trainer = build_trainer(*stage_args(tiny_model["full"], interleaved(records, count=8), tmp_path / "run",
                                        per_device_train_batch_size=4, num_generations=2, steps_per_generation=2,
                                        beta=0.1, temperature=0.7, ref_model_name_or_path=str(tmp_path / "other")))
    moved = dict(other.named_parameters())
    for name, parameter in trainer.ref_model.named_parameters():
        torch.testing.assert_close(parameter, moved[name], msg=name)
    trainer.model.train()
    trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    reference = thinker_of(trainer.accelerator.unwrap_model(trainer.ref_model))
    kinds = set()
    for micro in trainer._buffered_inputs:
        for i, row in enumerate(micro["media"]):
            kinds.add((row.has_video, row.has_audio))
            valid = micro["completion_mask"][i].bool()
            expected = _reference_logps(reference, row, micro["completion_ids"][i][valid].tolist(),
                                        trainer.temperature)
            torch.testing.assert_close(micro["ref_per_token_logps"][i][valid], expected, atol=1e-4, rtol=1e-4)
    assert {(True, False), (False, True)} <= kinds, kinds  # video and audio rows: both towers were checked
    with pytest.raises(ValueError, match="beta 0"):
        stage_args(tiny_model["full"], records[:2], tmp_path / "d", ref_model_name_or_path=str(tmp_path / "other"))
    with pytest.raises(ValueError, match="LoRA"):
        build_trainer(*stage_args(tiny_model["full"], records[:2], tmp_path / "e", beta=0.1, use_peft=True,
                                  lora_r=4, ref_model_name_or_path=str(tmp_path / "other")))
    with pytest.raises(ValueError, match="sync_ref_model"):
        stage_args(tiny_model["full"], records[:2], tmp_path / "f", beta=0.1, sync_ref_model=True,
                   ref_model_name_or_path=str(tmp_path / "other"))
    with pytest.raises(ValueError, match="qwen3_omni model; the policy is qwen2_5_omni"):
        build_trainer(*stage_args(tiny_model["full"], records[:2], tmp_path / "g", beta=0.1,
                                  ref_model_name_or_path=str(tiny_qwen3_model["full"])))


def test_over_long_prompt_is_refused_with_its_record(tiny_model, records, tmp_path):
    trainer = build_trainer(*stage_args(tiny_model["full"], interleaved(records, count=4), tmp_path,
                                        max_prompt_length=50))
    with pytest.raises(ValueError, match=r"record .*max_prompt_length=50"):
        trainer.train()


def test_trl_options_work_unchanged(tiny_model, records, tmp_path):
    """PEFT LoRA, dr_grpo loss, batch reward scaling, gradient checkpointing, clipping and KL settings."""
    trainer = build_trainer(*stage_args(
        tiny_model["full"], interleaved(records, count=6), tmp_path, use_peft=True, lora_r=4,
        lora_target_modules=["q_proj", "v_proj"], loss_type="dr_grpo", scale_rewards="batch",
        gradient_checkpointing=True, epsilon=0.3, beta=0.05, per_device_train_batch_size=6, num_generations=3))
    lora = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    trainer.train()
    assert lora, "no LoRA parameters were created"
    now = dict(trainer.model.named_parameters())
    assert any(not torch.equal(p, now[n]) for n, p in lora.items()), "the LoRA weights did not move"
    base = [n for n, p in trainer.model.named_parameters() if p.requires_grad and "lora_" not in n]
    assert not base, f"PEFT left base weights trainable: {base[:3]}"


def test_mask_truncated_completions_masks_the_loss(tiny_model, records, tmp_path):
    """TRL's masking of completions cut at max_completion_length reaches the loss mask of every row."""
    trainer = build_trainer(*stage_args(tiny_model["full"], interleaved(records, count=6), tmp_path,
                                        mask_truncated_completions=True, per_device_train_batch_size=6,
                                        num_generations=3))
    trainer.model.train()
    trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    eos = set(trainer.eos_token_ids)
    truncated = 0
    for micro in trainer._buffered_inputs:
        for ids, mask in zip(micro["completion_ids"], micro["completion_mask"]):
            ended = any(int(t) in eos for t in ids)
            if ended:
                assert mask.sum() > 0, "a completion that ended with EOS was masked"
            else:
                truncated += 1
                assert mask.sum() == 0, "a truncated completion still counts in the loss"
    assert truncated, "no completion hit max_completion_length: the check above never ran"


def test_trainable_encoders_build_no_graph_in_no_grad_passes(tiny_model, records, sample_data):
    """With trainable towers (use_cache=False) the encoders follow the caller: a graph for the loss forward,
    none inside TRL's no-grad log-prob passes and generation (a throwaway graph there costs activation memory)."""
    from hs_rl.data.arguments import DataArguments
    from hs_rl.data.prompt_media import prepare_prompt
    from hs_rl.omni.inputs import encode_media
    from hs_rl.omni.loading import freeze_encoders, load_processor, load_thinker

    thinker = load_thinker(tiny_model["full"])
    freeze_encoders(thinker, vision=False, audio=False)
    processor = load_processor(tiny_model["full"])
    data_args = DataArguments(video_max_frames=4, video_max_pixels=25088, video_min_pixels=3136)
    rows = [prepare_prompt(r, processor, data_args)[0] for r in records if r.modality == "video_audio"][:1]
    graphs: list[bool] = []  # per tower call: did its output carry an autograd graph?

    def record(module, inputs, output):
        tensor = output if isinstance(output, torch.Tensor) else next(
            v for v in output.values() if isinstance(v, torch.Tensor))
        graphs.append(tensor.grad_fn is not None)

    from hs_rl.omni.families import family_of

    towers = family_of(thinker).towers(thinker)
    hooks = [towers["vision"].register_forward_hook(record), towers["audio"].register_forward_hook(record)]
    with torch.no_grad():
        encoded, _ = encode_media(thinker, rows, use_cache=False, run_all_towers=True)
    assert graphs == [False, False], "the towers built a graph inside torch.no_grad()"
    assert all(t.grad_fn is None for e in encoded for t in e.values())
    graphs.clear()
    encoded, _ = encode_media(thinker, rows, use_cache=False, run_all_towers=True)
    assert graphs == [True, True]
    assert {"video", "audio"} <= set(encoded[0]) and all(t.requires_grad for t in encoded[0].values())
    for hook in hooks:
        hook.remove()


def test_each_clip_decoded_once_per_use_with_workers(tiny_model, records, tmp_path, monkeypatch):
    """The recipe's shape (one prompt per device per generation, steps_per_generation = accumulation, several
    DataLoader workers): TRL fetches the whole generation batch at every micro-step, and each fetch goes to the
    next worker, so each worker's own cache decoded the clip again. Each use must decode it once."""
    import hs_rl.data.prompt_media as prompt_media  # where a record's clip is decoded

    log = tmp_path / "decodes.txt"
    real_load_video = prompt_media.load_video

    def counting_load_video(path, *args, **kwargs):
        with open(log, "a") as handle:  # appended from the DataLoader worker processes
            handle.write(f"{path}\n")
        return real_load_video(path, *args, **kwargs)

    monkeypatch.setattr(prompt_media, "load_video", counting_load_video)
    video = [r for r in records if r.modality == "video"][:4]
    trainer = build_trainer(*stage_args(tiny_model["full"], video, tmp_path / "run", num_generations=4,
                                        per_device_train_batch_size=1, gradient_accumulation_steps=4,
                                        steps_per_generation=4, dataloader_num_workers=2, max_steps=2,
                                        max_completion_length=4))
    trainer.train()
    from collections import Counter

    decoded = Counter(log.read_text().splitlines())  # clips of the 2 generations, and of prefetched batches
    assert len(decoded) >= 2 and set(decoded.values()) == {1}, decoded


def test_reference_shares_only_the_frozen_tensors(omni_model, records, tmp_path):
    """beta > 0: TRL's reference holds the policy's own tensors for the frozen towers (and, with freeze_experts, the
    experts), its own copy of everything trained; a real step moves the policy and leaves the reference's copy."""
    from hs_rl.omni.inputs import thinker_of

    chosen = interleaved(records, count=4)
    trainer = build_trainer(*stage_args(omni_model["full"], chosen, tmp_path / "shared", beta=0.1,
                                        freeze_experts=True))
    policy, reference = thinker_of(trainer.model), thinker_of(trainer.ref_model)
    mine, theirs = dict(policy.named_parameters()), dict(reference.named_parameters())
    frozen = {n for n, p in mine.items() if not p.requires_grad}
    parts = parameter_parts(policy)
    assert any(parts[n] == "vision" for n in frozen) and any(parts[n] == "audio" for n in frozen)
    if hasattr(policy.config.get_text_config(), "num_experts"):  # Qwen3-Omni: the MoE experts too
        assert any("experts" in n for n in frozen)
    assert all(theirs[n] is mine[n] for n in frozen)
    trained = set(mine) - frozen
    assert trained and all(theirs[n].data_ptr() != mine[n].data_ptr() for n in trained)
    reference_before = {n: theirs[n].detach().clone() for n in trained}
    policy_before = {n: p.detach().clone() for n, p in mine.items()}
    trainer.train()
    assert any(not torch.equal(policy_before[n], mine[n]) for n in trained), "the step changed no weight"
    assert all(torch.equal(reference_before[n], theirs[n]) for n in trained), "a policy step moved the reference"
    assert all(theirs[n] is mine[n] and torch.equal(policy_before[n], mine[n]) for n in frozen)

    for switch in ({"reference_shares_frozen": False}, {"sync_ref_model": True}):  # a full copy: nothing shared
        alone = build_trainer(*stage_args(omni_model["full"], chosen, tmp_path / str(switch), beta=0.1, **switch))
        copied = dict(thinker_of(alone.ref_model).named_parameters())
        assert all(p.data_ptr() != copied[n].data_ptr() for n, p in thinker_of(alone.model).named_parameters())


def test_changed_frozen_weights_are_refused_before_the_first_step(tiny_model, records, tmp_path):
    """A resume whose checkpoint carries other frozen weights than the stage's start (say, trained with other
    freeze_* settings) would hand them to the reference that shares them: refused, with the way out named."""
    from hs_rl.omni.inputs import thinker_of

    trainer = build_trainer(*stage_args(tiny_model["full"], interleaved(records, count=4), tmp_path, beta=0.1))
    tower = next(p for n, p in thinker_of(trainer.model).named_parameters()
                 if parameter_parts(trainer.model)[n] == "audio")
    with torch.no_grad():
        tower.add_(0.5)  # what loading such a checkpoint does to the policy's (shared) tensor
    with pytest.raises(RuntimeError, match="freeze_audio_encoder.*reference_shares_frozen: false"):
        trainer.train()


def test_a_batch_gets_its_own_rows_and_a_group_still_shares_one():
    """The step writes encoder outputs and rope into its rows' caches and moves their tensors: it gets one fresh
    copy per distinct prompt (a group's rows one shared object, as before), so the prompt the DataLoader side keeps
    (prompt_cache_size) holds none of that after the step."""
    import torch

    from hs_rl.data.prompt_media import PromptMedia
    from hs_rl.grpo.trainer import _batch_rows

    kept = [PromptMedia(input_ids=torch.arange(5)), PromptMedia(input_ids=torch.arange(7))]
    rows = _batch_rows([kept[0]] * 3 + [kept[1]] * 2, torch.device("cpu"))
    assert rows[0] is rows[1] is rows[2] and rows[3] is rows[4] and rows[0] is not rows[3]
    assert all(row is not original for row in rows for original in kept)
    rows[0].cache["encoded"] = torch.ones(2)
    rows[0].input_ids = rows[0].input_ids + 1
    assert kept[0].cache == {} and kept[0].input_ids.tolist() == list(range(5))
    assert rows[3].input_ids.data_ptr() == kept[1].input_ids.data_ptr()  # tensors on the device already: not copied
