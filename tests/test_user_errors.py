"""A user's mistake (a path, an option, a YAML key, a value) is one line per problem, all of one run at once, with
what to do, and no traceback: from `hs-rl`, `python -m hs_rl.train` (what accelerate runs) and the stage scripts."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "stages" / "tiny" / "stage1_video.yaml"


def test_flag_typos_are_all_named_with_the_closest_option(capsys):
    from hs_rl.cli import main

    assert main(["train", str(TINY), "--max_stesp", "3", "--lerning_rate=1", "--beta", "0"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "hs-rl train: 2 problems:",
        "  unknown option --max_stesp; did you mean '--max_steps'?",
        "  unknown option --lerning_rate; did you mean '--learning_rate'?"]


def test_wrong_paths_and_use_vllm_are_listed_at_once_before_any_weight_loads(tmp_path, capsys, monkeypatch):
    from hs_rl.cli import main

    monkeypatch.setitem(sys.modules, "vllm", None)  # a machine without vLLM (`import vllm` raises ImportError)
    code = main(["train", str(TINY), "--model_name_or_path", str(tmp_path / "no_model"), "--dataset",
                 str(tmp_path / "none.jsonl"), "--use_vllm", "true", "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = err.splitlines()
    assert lines[0] == "hs-rl train: 3 problems:"
    assert lines[1] == (f"  model path '{tmp_path / 'no_model'}' is not a local folder (hs-rl never downloads weights) "
                        "(model_name_or_path)")
    assert lines[2].startswith("  use_vllm: vLLM cannot be imported") and 'bash scripts/setup.sh' in lines[2]
    assert lines[3] == (f"  dataset '{tmp_path / 'none.jsonl'}' does not exist (`dataset:` in the stage YAML or "
                        "--dataset)")


def test_unknown_command_and_a_bad_value_are_one_line(capsys):
    from hs_rl.cli import main

    assert main(["trian"]) == 2
    assert capsys.readouterr().err.splitlines()[0] == "hs-rl: unknown command 'trian'; did you mean 'train'?"
    assert main(["train", str(TINY), "--max_steps", "abc"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "hs-rl train: argument --max_steps/--max-steps: invalid int value: 'abc' (hs-rl train --help lists the "
        "options)"]


def test_swapped_rewards_with_the_base_weights_say_where_the_weights_come_from(capsys):
    from hs_rl.cli import main

    assert main(["train", str(TINY), "--reward_funcs", "format", "accuracy"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"hs-rl train: reward_weights has 3 entries (from {REPO / 'stages' / 'tiny' / 'base.yaml'}) for 2 rewards "
        "(reward_funcs ['format', 'accuracy'], from the command line): give one weight per reward next to "
        "reward_funcs, e.g. --reward_weights 1.0 1.0"]


def test_train_help_is_short_and_its_usage_shows_the_stage_yaml(capsys):
    from hs_rl.cli import main

    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "usage: hs-rl train STAGE.yaml [--option value …]"
    assert len(out.splitlines()) < 200  # was 1,481 lines of TRL's and transformers' options
    assert "--expect_modalities" in out and "--learning_rate" in out and "hs-rl train --help-all" in out
    assert "--adam_beta1" not in out
    # the checkpointing option under the name the installed transformers gives it (5.23: activation_, 5.20: gradient_)
    from hs_rl.commands import build_parser

    dests = {action.dest for action in build_parser("train")._actions}
    spelling = "activation" if "activation_checkpointing" in dests else "gradient"
    assert f"--{spelling}_checkpointing " in out
    assert main(["train", "--help-all"]) == 0
    full = capsys.readouterr().out
    assert full.startswith("usage: hs-rl train STAGE.yaml") and "--adam_beta1" in full


def test_stage_script_errors_are_one_line(tmp_path):
    """`accelerate launch launch/stage1.sh …` runs the script's Python part: a flag typo, and a stage folder without
    the stage YAML, each end in one line (exit 2)."""
    env = {**os.environ, "HS_RL_STAGES": "stages/tiny"}
    typo = subprocess.run([sys.executable, "launch/stage1.sh", "--max_stesp", "1"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert typo.returncode == 2
    assert typo.stderr.strip() == "hs-rl train: unknown option --max_stesp; did you mean '--max_steps'?"
    env["HS_RL_STAGES"] = str(tmp_path)
    missing = subprocess.run([sys.executable, "launch/stage1.sh"], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=120)
    assert missing.returncode == 2
    assert missing.stderr.strip() == (f"hs-rl train: stage YAML stage1_video.yaml not found in {tmp_path} (set "
                                      "HS_RL_STAGES to the folder of your stage YAMLs)")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_user_error_under_accelerate_launch_is_one_line(tiny_model, tmp_path):
    """`accelerate launch -m hs_rl.train …` with a wrong dataset: our line, once, and no traceback (`-q` keeps
    accelerate from adding one of its own for the exit status)."""
    accelerate = shutil.which("accelerate", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                                   os.environ.get("PATH", "")]))
    assert accelerate, "the accelerate command is not installed"
    result = subprocess.run(
        [accelerate, "launch", "--cpu", "-q", "--num_processes", "1", "-m", "hs_rl.train", str(TINY),
         "--model_name_or_path", str(tiny_model["full"]), "--dataset", str(tmp_path / "none.jsonl"),
         "--output_dir", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    output = result.stdout + result.stderr
    assert result.returncode != 0
    line = (f"hs-rl train: dataset '{tmp_path / 'none.jsonl'}' does not exist (`dataset:` in the stage YAML or "
            "--dataset)")
    assert output.count(line) == 1, output
    assert "Traceback" not in output, output
