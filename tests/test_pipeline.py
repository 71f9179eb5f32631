"""The pipeline and the demo: stages chained without editing paths, done stages skipped, overrides."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_overrides_and_selection():
    from hs_rl.pipeline import load_pipeline, parse_overrides, select_stages

    spec = load_pipeline(REPO / "stages" / "pipeline.yaml")
    names = [s.name for s in spec.stages]
    assert names == ["stage1_video", "stage2_audio", "stage3_video_audio"]
    parsed = parse_overrides(["max_steps=3", "stage2_audio.learning_rate=2e-6"], names)
    assert parsed == {None: {"max_steps": "3"}, "stage2_audio": {"learning_rate": "2e-6"}}
    with pytest.raises(ValueError, match="no stage named"):
        parse_overrides(["stage9.max_steps=1"], names)
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["max_steps"], names)
    assert select_stages(spec, "stage2_audio", None) == [1, 2]
    assert select_stages(spec, None, "stage3_video_audio") == [2]


def test_dry_run_chains_models(capsys):
    from hs_rl.pipeline import PipelineArguments, run_pipeline

    assert run_pipeline(PipelineArguments(pipeline=str(REPO / "stages" / "pipeline.yaml"), output_dir="/x",
                                          dry_run=True, override=["stage1_video.max_steps=3"])) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert "--max_steps 3" in lines[0] and "--max_steps" not in lines[1]
    assert "--model_name_or_path /x/stage1_video/final" in lines[1]
    assert "--model_name_or_path /x/stage2_audio/final" in lines[2]


def test_demo_trains_three_stages_and_resumes(tmp_path, capsys):
    from hs_rl.tools.demo import DemoArguments, run_demo

    args = DemoArguments(output_dir=str(tmp_path), override=["max_steps=2", "save_steps=2"], warmup_steps=2,
                         evaluate=False)
    assert run_demo(args) == 0
    out = capsys.readouterr().out
    assert "summary" in out and "stage3_video_audio" in out
    for name in ("stage1_video", "stage2_audio", "stage3_video_audio"):
        assert (tmp_path / name / "STAGE_DONE.json").is_file()
        assert (tmp_path / name / "final" / "spk_dict.pt").is_file()
    done = json.loads((tmp_path / "stage2_audio" / "STAGE_DONE.json").read_text())
    assert done["input_model"] == str(tmp_path / "stage1_video" / "final")
    # a kill after stage 3's last checkpoint, before its export: the same command finishes it
    shutil.rmtree(tmp_path / "stage3_video_audio" / "final")
    (tmp_path / "stage3_video_audio" / "STAGE_DONE.json").unlink()
    assert run_demo(args) == 0
    out = capsys.readouterr().out
    assert "[stage1_video] done, skipped" in out and "[stage2_audio] done, skipped" in out
    assert (tmp_path / "stage3_video_audio" / "STAGE_DONE.json").is_file()
    steps = [h["step"] for h in json.loads((tmp_path / "stage3_video_audio" / "log_history.json").read_text())
             if "loss" in h]
    assert steps == [1, 2]


def test_demo_report_compares_base_and_stages(tmp_path_factory):
    """The demo's report holds one column per model (base, then each stage) over the held-out curriculum."""
    from hs_rl.tools.demo import evaluate_models, prepare_inputs

    root = tmp_path_factory.mktemp("demo_eval")
    model, _ = prepare_inputs(root)
    report = evaluate_models(root, {"base": model, "again": model})
    scores = json.loads((report / "scores.json").read_text())
    assert list(scores["models"]) == ["base", "again"]
    assert scores["models"]["base"]["all"]["total"] == 96  # 3 families x 32 held-out questions
    assert scores["models"]["base"]["all"] == scores["models"]["again"]["all"]  # greedy: same model, same answers
    assert (report / "tasks.png").stat().st_size > 0 and "again" in (report / "report.md").read_text()


def test_stage_eval_block_adds_a_report_column(tiny_model, sample_data, tmp_path):
    """A stage naming an eval set is evaluated once done, and its column lands in OUTPUT_DIR/report."""
    import yaml

    from hs_rl.data.convert import convert_file
    from hs_rl.data.records import write_records
    from hs_rl.pipeline import PipelineArguments, run_pipeline

    records = [r for r in convert_file(sample_data["train_json"], media_root=sample_data["media_root"])
               if r.modality == "video"]
    write_records(records, tmp_path / "video.jsonl")
    pipeline = {
        "output_dir": str(tmp_path / "run"), "model_name_or_path": str(tiny_model["full"]),
        "stages": [{"name": "only_video", "config": str(REPO / "stages" / "tiny" / "stage1_video.yaml"),
                    "dataset": str(tmp_path / "video.jsonl"),
                    "eval": {"data": [str(sample_data["vqa_json"])], "media_root": str(sample_data["media_root"]),
                             "limit": 6, "max_new_tokens": 4, "video_max_frames": 4, "video_max_pixels": 25088}}],
    }
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    assert run_pipeline(PipelineArguments(pipeline=str(tmp_path / "pipeline.yaml"),
                                          override=["max_steps=1", "save_steps=1"])) == 0
    results = [json.loads(x) for x in (tmp_path / "run" / "only_video" / "eval" / "results.jsonl").read_text()
               .splitlines()]
    assert len(results) == 6 and {r["model"] for r in results} == {"only_video"}
    scores = json.loads((tmp_path / "run" / "report" / "scores.json").read_text())
    assert scores["all"]["total"] == 6 and "only_video" in (tmp_path / "run" / "report" / "report.md").read_text()
