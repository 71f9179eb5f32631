"""The pipeline and the demo: stages chained without editing paths, done stages skipped, overrides."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_overrides_and_selection():
    from hs_rl.errors import UserError
    from hs_rl.pipeline import load_pipeline, parse_overrides, select_stages

    spec = load_pipeline(REPO / "stages" / "pipeline.yaml")
    names = [s.name for s in spec.stages]
    assert names == ["stage1_video", "stage2_audio", "stage3_video_audio"]
    parsed = parse_overrides(["max_steps=3", "stage2_audio.learning_rate=2e-6"], names)
    assert parsed == {None: {"max_steps": "3"}, "stage2_audio": {"learning_rate": "2e-6"}}
    # every bad item at once, a mistyped stage name with the closest one
    with pytest.raises(UserError) as error:
        parse_overrides(["stage9.max_steps=1", "stage2_audoi.beta=0", "max_steps"], names)
    assert error.value.problems == [
        "--override 'stage9.max_steps=1': no stage named 'stage9' (stages: stage1_video, stage2_audio, "
        "stage3_video_audio)",
        "--override 'stage2_audoi.beta=0': no stage named 'stage2_audoi'; did you mean 'stage2_audio'? (stages: "
        "stage1_video, stage2_audio, stage3_video_audio)",
        "--override 'max_steps': expected KEY=VALUE or STAGE.KEY=VALUE"]
    assert select_stages(spec, "stage2_audio", None) == [1, 2]
    assert select_stages(spec, None, "stage3_video_audio") == [2]


@pytest.mark.parametrize("command", ["pipeline", "demo"])
def test_repeated_override_flags_all_count(command):
    """`--override A --override B C` keeps A, B and C (argparse's plain store kept only the last flag's values)."""
    from hs_rl.commands import build_parser

    argv = ["--override", "beta=0.1", "--override", "stage2_audio.beta=0.2", "stage3_video_audio.max_steps=3"]
    if command == "pipeline":
        argv = ["--pipeline", str(REPO / "stages" / "pipeline.yaml"), *argv]
    parsed = build_parser(command).parse_args_and_config(argv)[0]
    assert parsed.override == ["beta=0.1", "stage2_audio.beta=0.2", "stage3_video_audio.max_steps=3"]


def test_dry_run_chains_models(capsys):
    from hs_rl.errors import UserError
    from hs_rl.pipeline import PipelineArguments, run_pipeline

    with pytest.raises(UserError, match="nothing was run") as error:  # no model nor data here: checked, refused
        run_pipeline(PipelineArguments(pipeline=str(REPO / "stages" / "pipeline.yaml"), output_dir="/x",
                                       dry_run=True, override=["stage1_video.max_steps=3"]))
    # the first stage's model is checked; the later ones start from a model this run would write (not checked)
    assert any(p.startswith("[stage1_video] model path 'models/Qwen2.5-Omni-7B'") for p in error.value.problems)
    assert not any(p.startswith("[stage2_audio] model path") for p in error.value.problems)
    assert {p.split("]")[0] for p in error.value.problems if "does not exist" in p} == {
        "[stage1_video", "[stage2_audio", "[stage3_video_audio"}  # every stage's missing dataset, at once
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert "--max_steps 3" in lines[0] and "--max_steps" not in lines[1]
    assert "--model_name_or_path /x/stage1_video/final" in lines[1]
    assert "--model_name_or_path /x/stage2_audio/final" in lines[2]
    assert not Path("/x").exists()


def _tiny_pipeline(tmp_path: Path, tiny_model, sample_data, stage3_config: Path | None = None) -> Path:
    """The three tiny stages on the sample data, each with the records of its modality."""
    import yaml

    from hs_rl.data.convert import convert_file
    from hs_rl.data.records import write_records

    records = convert_file(sample_data["train_json"], media_root=sample_data["media_root"])
    stages = []
    for name, modality in (("stage1_video", "video"), ("stage2_audio", "audio"),
                           ("stage3_video_audio", "video_audio")):
        write_records([r for r in records if r.modality == modality], tmp_path / f"{name}.jsonl")
        config = REPO / "stages" / "tiny" / f"{name}.yaml"
        stages.append({"name": name, "config": str(stage3_config if stage3_config and modality == "video_audio"
                                                   else config), "dataset": str(tmp_path / f"{name}.jsonl")})
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "run"), "model_name_or_path":
                                        str(tiny_model["full"]), "stages": stages}))
    return pipeline


@pytest.mark.parametrize("dry_run", [False, True])
def test_stage3_mistakes_stop_the_pipeline_before_stage1_trains(tiny_model, sample_data, tmp_path, capsys, dry_run):
    """A typo in stage 3's YAML, a typo in an --override for stage 3 and a missing stage-3 clip: all three listed at
    once, before stage 1 runs a step (it used to fail after stages 1 and 2 had trained), and no advice to resume."""
    import json as json_module

    from hs_rl.cli import main

    stage3 = tmp_path / "stage3.yaml"
    stage3.write_text(f"base: {REPO / 'stages' / 'tiny' / 'base.yaml'}\ntemprature: 1.2\n")
    pipeline = _tiny_pipeline(tmp_path, tiny_model, sample_data, stage3)
    data = tmp_path / "stage3_video_audio.jsonl"
    rows = [json_module.loads(line) for line in data.read_text().splitlines()]
    rows[1]["video"] = str(tmp_path / "gone.mp4")  # a clip deleted after conversion
    data.write_text("".join(json_module.dumps(r) + "\n" for r in rows))
    argv = ["pipeline", str(pipeline), "--override", "max_steps=1", "stage3_video_audio.lerning_rate=1"]
    assert main(argv + (["--dry_run"] if dry_run else [])) == 2
    err = capsys.readouterr().err
    assert err.startswith("hs-rl pipeline: 3 problems:"), err
    assert "[stage3_video_audio] " + f"{stage3}: unknown key 'temprature'; did you mean 'temperature'?" in err
    assert ("[stage3_video_audio] --override stage3_video_audio.lerning_rate=1: unknown option --lerning_rate; did "
            "you mean '--learning_rate'?") in err
    assert f"[stage3_video_audio] {data}: line 2 [{rows[1]['id']}]: video file not found: {tmp_path / 'gone.mp4'}" \
        in err
    assert "resume" not in err and "Traceback" not in err and "nothing was run" in err
    assert not (tmp_path / "run").exists()  # stage 1 never started: no folder, no checkpoint, no train.log


def test_a_stage_that_stops_at_a_user_error_is_not_told_to_resume(tiny_model, tmp_path, capsys):
    """A stage process that meets a user error writes it for the pipeline, whatever launcher ran it: the pipeline
    says what to fix, not "run again to resume"."""
    import sys

    from hs_rl.pipeline import report_failure, run_stage_process

    stage_dir = tmp_path / "stage"
    stage_dir.mkdir()
    command = [sys.executable, "-m", "hs_rl.train", str(REPO / "stages" / "tiny" / "stage1_video.yaml"),
               "--model_name_or_path", str(tiny_model["full"]), "--dataset", str(tmp_path / "nowhere.jsonl"),
               "--output_dir", str(stage_dir)]
    code = run_stage_process("stage", command, stage_dir, 30.0)
    assert code == 2
    report_failure("stage", stage_dir, code)
    out = capsys.readouterr().out
    assert f"dataset '{tmp_path / 'nowhere.jsonl'}' does not exist" in out and "fix that" in out
    assert "resume" not in out
    assert "Traceback" not in (stage_dir / "train.log").read_text()


def _done_stage(tmp_path: Path, tiny_model, sample_data, override: list[str]) -> tuple[Path, Path]:
    """A pipeline of stage 1 only, whose stage is done (a real export of the tiny model) with these overrides."""
    import yaml

    from hs_rl.omni.export import export_model
    from hs_rl.pipeline import (
        PipelineArguments,
        load_pipeline,
        mark_done,
        parse_overrides,
        plan_stages,
        stage_settings,
    )

    full = _tiny_pipeline(tmp_path, tiny_model, sample_data)
    spec = yaml.safe_load(full.read_text())
    spec["stages"] = spec["stages"][:1]
    pipeline = tmp_path / "one.yaml"
    pipeline.write_text(yaml.safe_dump(spec))
    loaded = load_pipeline(pipeline)
    stage_dir = tmp_path / "run" / "stage1_video"
    export_model(tiny_model["thinker"], tiny_model["full"], stage_dir / "final")
    args = PipelineArguments(pipeline=str(pipeline), override=override)
    plan = plan_stages(args, loaded, tmp_path / "run", [0], parse_overrides(override, ["stage1_video"]), set())[0]
    mark_done(stage_dir, loaded.stages[0], str(tiny_model["full"]), stage_settings(loaded.stages[0], plan.options))
    return pipeline, stage_dir


def test_a_done_stage_says_new_settings_were_not_applied_and_redo_trains_it_again(tiny_model, sample_data,
                                                                                    tmp_path, capsys):
    import sys

    from hs_rl.pipeline import PipelineArguments, run_pipeline

    pipeline, stage_dir = _done_stage(tmp_path, tiny_model, sample_data, ["max_steps=2"])
    assert run_pipeline(PipelineArguments(pipeline=str(pipeline), override=["max_steps=2"], dry_run=True)) == 0
    out = capsys.readouterr().out
    assert "[stage1_video] done, skipped" in out and "WARNING" not in out  # same settings: nothing to say
    assert run_pipeline(PipelineArguments(pipeline=str(pipeline), override=["max_steps=8", "beta=0"],
                                          dry_run=True)) == 0
    out = capsys.readouterr().out
    assert "[stage1_video] done, skipped" in out
    assert ("[stage1_video] WARNING: its settings differ from those it was trained with (beta, max_steps); a done "
            "stage is not trained again, so they were NOT applied. To train it again with them, add --redo "
            "stage1_video") in out
    # --redo: the done stage's folder is moved aside (not deleted) and the stage runs again; here a launcher that
    # stops at once stands in for the training, so the test stays fast
    failing = f"{sys.executable} -c 'import sys; sys.exit(3)'"
    code = run_pipeline(PipelineArguments(pipeline=str(pipeline), override=["max_steps=8"], redo=["stage1_video"],
                                          launcher=failing))
    out = capsys.readouterr().out
    assert code == 3
    aside = list(stage_dir.parent.glob("stage1_video.before-redo-*"))
    assert len(aside) == 1 and (aside[0] / "final" / "hs_rl_export.json").is_file()
    assert "--redo: moved" in out and "Run the same command without --redo again to resume" in out
    assert not (stage_dir / "STAGE_DONE.json").exists()


@pytest.mark.slow
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
    results = [json.loads(x) for x in (tmp_path / "run" / "only_video" / "eval" / "only_video.jsonl").read_text()
               .splitlines()]
    assert len(results) == 6 and {r["model"] for r in results} == {"only_video"}
    scores = json.loads((tmp_path / "run" / "report" / "scores.json").read_text())
    assert scores["all"]["total"] == 6 and "only_video" in (tmp_path / "run" / "report" / "report.md").read_text()
