"""Qwen3-Omni specifics: the tiny checkpoint's layout, the family read from config.json (never the path), the
packed shared-prefix forward refused (said once) for the DeepStack thinker, eval, the demo, the stage YAMLs.
The family-parametrised behaviour (steps, log-probs, export, resume, ZeRO-3) is in the shared test files."""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys

import pytest

from hs_rl.train import build_trainer
from tests.grpo.trainer_helpers import interleaved, sample_records, stage_args


def test_tiny_checkpoint_is_laid_out_like_the_released_one(tiny_qwen3_model, tmp_path):
    from safetensors import safe_open

    from hs_rl.omni.families import family_of_dir

    config = json.loads((tiny_qwen3_model["full"] / "config.json").read_text())
    assert config["model_type"] == "qwen3_omni_moe"
    assert config["architectures"] == ["Qwen3OmniMoeForConditionalGeneration"]
    text = config["thinker_config"]["text_config"]
    assert text["num_experts"] > text["num_experts_per_tok"] > 0
    assert config["thinker_config"]["vision_config"]["deepstack_visual_indexes"]
    with safe_open(tiny_qwen3_model["full"] / "model.safetensors", "pt") as handle:
        tops = {key.split(".")[0] for key in handle.keys()}
        names = set(handle.keys())
    assert tops == {"thinker", "talker", "code2wav"}
    # the released names: per-expert weights under thinker.model.layers (fused only in memory)
    assert "thinker.model.layers.0.mlp.experts.0.gate_proj.weight" in names
    assert any(k.startswith("thinker.visual.") for k in names) and any(k.startswith("thinker.audio_tower.")
                                                                         for k in names)
    # the family comes from config.json, not the folder's name: a Qwen3 model in a folder named like 2.5
    misleading = tmp_path / "Qwen2.5-Omni-7B"
    shutil.copytree(tiny_qwen3_model["thinker"], misleading)
    assert family_of_dir(misleading).name == "qwen3_omni"
    assert family_of_dir(tiny_qwen3_model["full"]).name == "qwen3_omni"


def test_cli_make_tiny_model_family(tmp_path):
    result = subprocess.run([sys.executable, "-m", "hs_rl.cli", "make-tiny-model", str(tmp_path / "m"),
                             "--family", "qwen3_omni"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == "qwen3_omni_moe"
    assert json.loads((tmp_path / "m" / "thinker" / "config.json").read_text())["model_type"] == \
        "qwen3_omni_moe_thinker"


def test_packed_shared_prefix_refused_once_with_its_reason(tiny_qwen3_model, sample_data, tmp_path, caplog):
    """Packed groups do not lay out DeepStack's per-row features: refused (plain forward), said once, aux loss
    on or off."""
    for coef in (None, 0.0):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="hs_rl.grpo.trainer"):
            extra = {} if coef is None else {"router_aux_loss_coef": coef}
            trainer = build_trainer(*stage_args(tiny_qwen3_model["full"], interleaved(sample_records(sample_data),
                                                                                      count=2), tmp_path, **extra))
        assert not trainer.shared_prefix and trainer.aux_loss_enabled == (coef is None)
        said = [r.getMessage() for r in caplog.records if "shared_prefix is off" in r.getMessage()]
        assert len(said) == 1 and "DeepStack" in said[0]


def test_eval_answers_a_sample_benchmark(tiny_qwen3_model, sample_data, tmp_path, capsys):
    """`hs-rl eval` on the Qwen3-Omni checkpoint: video, video+audio and audio questions answered, scored."""
    from hs_rl.cli import main
    from hs_rl.eval.scoring import load_results, score_items
    from tests.eval.test_evaluate import mixed_benchmark

    data = mixed_benchmark(sample_data, tmp_path / "mixed.json")
    out = tmp_path / "results.jsonl"
    code = main(["eval", "--model", str(tiny_qwen3_model["full"]), "--data", str(data), "--out", str(out),
                 "--media_root", str(sample_data["media_root"]), "--max_new_tokens", "4", "--batch_size", "4"])
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and not any("error" in r for r in rows)
    assert {r["modality"] for r in rows} == {"video", "video_audio", "audio"}
    items, _ = load_results(out)
    assert score_items(items)["all"]["total"] == len(rows)


@pytest.mark.slow
def test_demo_runs_three_stages(tmp_path, capsys):
    """`hs-rl demo --family qwen3_omni`: the shared demo (curriculum, format warm-up through the family's forward,
    stages/demo) on a demo-sized Qwen3-Omni; each final a full Qwen3-Omni the next trains from."""
    from hs_rl.tools.demo import DemoArguments, run_demo

    args = DemoArguments(output_dir=str(tmp_path), family="qwen3_omni", override=["max_steps=1"], warmup_steps=1,
                         evaluate=False)
    assert run_demo(args) == 0
    out = capsys.readouterr().out
    assert "summary" in out and "stage3_video_audio" in out
    for name in ("model", "base/final"):
        assert json.loads((tmp_path / name / "config.json").read_text())["model_type"] == "qwen3_omni_moe"
    for name in ("stage1_video", "stage2_audio", "stage3_video_audio"):
        config = json.loads((tmp_path / name / "final" / "config.json").read_text())
        assert config["architectures"] == ["Qwen3OmniMoeForConditionalGeneration"]
    done = json.loads((tmp_path / "stage3_video_audio" / "STAGE_DONE.json").read_text())
    assert done["input_model"] == str(tmp_path / "stage2_audio" / "final")


@pytest.mark.parametrize("stage", ["stage1_video", "stage2_audio", "stage3_video_audio"])
def test_recipe_stage_yaml_parses(stage):
    """stages/qwen3_omni/*.yaml: every key is an option, and the Qwen3 settings are what the file says."""
    from pathlib import Path

    from hs_rl.commands import build_parser, check_config_keys

    path = Path(__file__).resolve().parents[2] / "stages" / "qwen3_omni" / f"{stage}.yaml"
    parser = build_parser("train")
    check_config_keys(parser, str(path))
    parsed = parser.parse_args_and_config(["--config", str(path), "--bf16", "false", "--use_cpu", "true"])  # no GPU
    config = next(p for p in parsed if hasattr(p, "router_aux_loss_coef"))
    assert config.router_aux_loss_coef == 0.001 and config.freeze_experts is False
    # the recipe's batch shape from stages/base.yaml, through the qwen3_omni/base.yaml chain
    assert (config.per_device_train_batch_size, config.gradient_accumulation_steps, config.steps_per_generation,
            config.num_generations) == (8, 1, 1, 8)
    model = next(p for p in parsed if hasattr(p, "model_name_or_path"))
    assert "Qwen3-Omni-30B-A3B" in model.model_name_or_path
