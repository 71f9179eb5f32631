"""How a stage setting is resolved: base YAML -> stage YAML -> pipeline -> command line, last one wins."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from hs_rl.commands import build_parser, check_config_keys, parse_command, read_config
from hs_rl.errors import UserError
from hs_rl.pipeline import PipelineArguments, run_pipeline

REPO = Path(__file__).resolve().parents[1]
SHOUT = "def shout(completions, **kwargs):\n    return [1.0 if '!' in str(c) else 0.0 for c in completions]\n"


def write_stage(tmp_path: Path) -> Path:
    """base.yaml (with a reward file beside it) and stages/stage.yaml naming it as its base."""
    (tmp_path / "mine.py").write_text(SHOUT)
    (tmp_path / "base.yaml").write_text(
        "learning_rate: 1.0e-5\nbeta: 0.1\nmax_steps: 3\nnum_generations: 2\nper_device_train_batch_size: 2\n"
        "use_cpu: true\nbf16: false\nreward_funcs: [format, mine.py:shout]\n")
    (tmp_path / "stages").mkdir()
    stage = tmp_path / "stages" / "stage.yaml"
    stage.write_text("base: ../base.yaml\nbeta: 0.2\ndataset: d.jsonl\noutput_dir: out\n")
    return stage


def test_base_then_stage_then_command_line(tmp_path, monkeypatch):
    stage = write_stage(tmp_path)
    monkeypatch.chdir("/")  # reward files resolve against the YAML that names them, not the current directory
    data, config, _ = parse_command("train", [str(stage), "--max_steps", "7"])
    assert config.learning_rate == 1.0e-5  # base
    assert config.beta == 0.2 and data.dataset == "d.jsonl"  # stage over base
    assert config.max_steps == 7  # command line over both
    assert config.reward_funcs == ["format", f"{(tmp_path / 'mine.py').resolve()}:shout"]


def test_pipeline_layers_sit_between_stage_and_command_line(tmp_path, capsys):
    stage = write_stage(tmp_path)
    (tmp_path / "pipeline.yaml").write_text(json.dumps({
        "output_dir": str(tmp_path / "run"), "model_name_or_path": "m",
        "stages": [{"name": "one", "config": str(stage), "dataset": "p.jsonl",
                    "options": {"beta": 0.3, "max_steps": 5, "dataset": "o.jsonl", "reward_funcs": ["mine.py:shout"],
                                "reward_kwargs": {"think_length": {"max_words": 8}}}}]}))
    with pytest.raises(UserError, match="model path 'm' is not a local folder"):  # checked, not run: 'm' is no model
        run_pipeline(PipelineArguments(pipeline=str(tmp_path / "pipeline.yaml"), dry_run=True,
                                       override=["max_steps=6", "one.max_steps=9"]))
    words = shlex.split(capsys.readouterr().out.splitlines()[0].split("] ", 1)[1])
    data, config, model = parse_command("train", words[words.index("hs_rl.train") + 1:])
    assert config.learning_rate == 1.0e-5 and config.beta == 0.3  # base; the stage's options over the stage YAML
    assert data.dataset == "p.jsonl" and model.model_name_or_path == "m"  # the stage entry's dataset, the input
    assert config.max_steps == 9 and config.output_dir == str(tmp_path / "run" / "one")  # STAGE.KEY wins
    assert config.reward_kwargs == {"think_length": {"max_words": 8}}
    assert config.reward_funcs == [f"{(tmp_path / 'mine.py').resolve()}:shout"]  # beside the pipeline YAML


def test_base_errors_name_the_file(tmp_path):
    loop = tmp_path / "a.yaml"
    loop.write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(UserError, match="loops back"):
        read_config(loop)
    (tmp_path / "c.yaml").write_text("base: missing.yaml\n")
    (tmp_path / "e.yaml").write_text("base: c.yaml\n")
    with pytest.raises(UserError, match=r"c\.yaml: `base: missing.yaml` names .*missing\.yaml, which does not exist"):
        read_config(tmp_path / "e.yaml")  # the YAML that names the missing base is named, not only the missing file
    (tmp_path / "typo.yaml").write_text("learning_rte: 1.0\nnum_generation: 2\n")
    (tmp_path / "d.yaml").write_text("base: typo.yaml\nbeta: 0.1\ntemprature: 1.0\n")
    with pytest.raises(UserError) as error:
        check_config_keys(build_parser("train"), str(tmp_path / "d.yaml"))
    # every unknown key at once, each with the file that holds it and the closest key
    assert error.value.problems == [
        f"{tmp_path / 'typo.yaml'}: unknown key 'learning_rte'; did you mean 'learning_rate'?",
        f"{tmp_path / 'typo.yaml'}: unknown key 'num_generation'; did you mean 'num_generations'?",
        f"{tmp_path / 'd.yaml'}: unknown key 'temprature'; did you mean 'temperature'?"]


@pytest.mark.parametrize("folder", ["stages", "stages/tiny"])
def test_repository_stages_share_one_base(folder):
    parser = build_parser("train")
    base = read_config(REPO / folder / "base.yaml")
    for name in ("stage1_video", "stage2_audio", "stage3_video_audio"):
        stage = check_config_keys(parser, str(REPO / folder / f"{name}.yaml"))
        assert {k: v for k, v in stage.items() if k in base} == base
        assert set(stage) - set(base) == {"dataset", "output_dir", "expect_modalities"} and name in stage["dataset"]
        assert stage["expect_modalities"] == [name.split("_", 1)[1]]  # what the stage's name says it trains


@pytest.mark.parametrize("line, message", [("over_long_prompts: skp", "did you mean 'skip'"),
                                           ("reward_errors: zeros", "did you mean 'zero'"),
                                           ("remove_unused_columns: true", "media")])
def test_a_fixed_choice_from_yaml_is_checked(tmp_path, line, message):
    stage = write_stage(tmp_path)
    stage.write_text(stage.read_text() + line + "\n")
    with pytest.raises(ValueError, match=message):
        parse_command("train", [str(stage)])


@pytest.mark.parametrize("words,expected", [
    ([], True),  # TRL's default under either name
    (["--gradient_checkpointing", "false"], False),
    (["--no_gradient_checkpointing"], False),
    (["--no_activation_checkpointing"], False),
    (["--activation_checkpointing=false", "--gradient_checkpointing", "true"], True),  # the last one wins
])
def test_checkpointing_is_one_option_under_either_name(tmp_path, words, expected):
    """transformers renamed gradient_checkpointing to activation_checkpointing (5.23; 5.20 has the old name only):
    both spellings, in the YAML and as flags (with `--no_…`), set the one option the installed release has."""
    stage = write_stage(tmp_path)
    _, config, _ = parse_command("train", [str(stage), *words])
    name = "activation_checkpointing" if hasattr(config, "activation_checkpointing") else "gradient_checkpointing"
    assert getattr(config, name) is expected
    for key in ("gradient_checkpointing", "activation_checkpointing"):
        (tmp_path / "off.yaml").write_text(f"base: {stage}\n{key}: false\n")
        _, config, _ = parse_command("train", [str(tmp_path / "off.yaml")])
        assert getattr(config, name) is False, key
