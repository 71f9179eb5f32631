"""launch/: accelerate configs carry what accelerate needs, DeepSpeed JSONs leave batch/clip/bf16 to the stage
YAML ("auto"), and each launch script prints the exact `accelerate launch` command it would run (dry run)."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"
CONFIGS = sorted((LAUNCH / "accelerate").glob("*.yaml"))
SCRIPTS = {"stage1.sh": "stages/stage1_video.yaml", "stage2.sh": "stages/stage2_audio.yaml",
           "stage3.sh": "stages/stage3_video_audio.yaml"}
REQUIRED = {"compute_environment", "distributed_type", "num_machines", "num_processes", "machine_rank",
            "main_training_function", "use_cpu"}
# accelerate refuses these next to `deepspeed_config_file` (they belong in the JSON or the stage YAML)
DS_FILE_FORBIDDEN = {"gradient_accumulation_steps", "gradient_clipping", "zero_stage", "offload_optimizer_device",
                     "offload_param_device", "zero3_save_16bit_model", "mixed_precision"}


def test_expected_configs_exist():
    names = {p.stem for p in CONFIGS}
    assert {"ddp", "zero2", "zero3", "zero3_offload", "zero3_multinode"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_accelerate_config_fields(path):
    config = yaml.safe_load(path.read_text())
    assert REQUIRED <= set(config), REQUIRED - set(config)
    assert config["use_cpu"] is False
    assert config["num_processes"] == 8 * config["num_machines"]
    assert "gradient_accumulation_steps" not in config and "gradient_clipping" not in config
    if config["distributed_type"] == "MULTI_GPU":
        assert config["mixed_precision"] == "bf16"
        return
    assert config["distributed_type"] == "DEEPSPEED"
    ds = config["deepspeed_config"]
    assert not DS_FILE_FORBIDDEN & (set(ds) | set(config)), DS_FILE_FORBIDDEN & (set(ds) | set(config))
    json_path = ROOT / ds["deepspeed_config_file"]
    assert json_path.is_file()
    ds_json = json.loads(json_path.read_text())
    for key in ("gradient_accumulation_steps", "gradient_clipping", "train_micro_batch_size_per_gpu",
                "train_batch_size"):
        assert ds_json[key] == "auto", key  # the stage YAML (TRL config) is the one source of these
    assert ds_json["bf16"]["enabled"] == "auto"
    stage = ds_json["zero_optimization"]["stage"]
    assert ds["zero3_init_flag"] is (stage == 3)
    offload = "offload_param" in ds_json["zero_optimization"]
    assert offload == (path.stem in ("zero3_offload", "zero3_multinode"))  # the recipe: ZeRO-3 + CPU offload
    if stage == 3:
        assert ds_json["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    if "multinode" in path.stem:
        assert config["num_machines"] > 1 and "main_process_ip" in config and "main_process_port" in config


def _dry_run(script: str, *args: str, **env: str) -> list[str]:
    environment = {k: v for k, v in os.environ.items() if k not in (
        "ACCELERATE_CONFIG", "NUM_PROCESSES", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "GPUS_PER_NODE")}
    environment.update(HS_RL_DRY_RUN="1", **env)
    result = subprocess.run(["bash", str(LAUNCH / script), *args], capture_output=True, text=True, timeout=60,
                            env=environment, cwd="/")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("+ ")]
    assert len(lines) == 1, result.stdout
    return shlex.split(lines[0][2:])


@pytest.mark.parametrize("script", [*SCRIPTS, "pipeline.sh", "common.sh"])
def test_scripts_are_valid_bash(script):
    path = LAUNCH / script
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    assert "set -euo pipefail" in path.read_text()


@pytest.mark.parametrize("script", SCRIPTS)
def test_stage_script_default(script):
    words = _dry_run(script, "--max_steps", "3", "--output_dir", "a b")
    assert words[:4] == ["accelerate", "launch", "--config_file", "launch/accelerate/zero3_offload.yaml"]
    option = dict(zip(words[4:14:2], words[5:14:2]))
    assert option == {"--num_processes": "8", "--num_machines": "1", "--machine_rank": "0",
                      "--main_process_ip": "127.0.0.1", "--main_process_port": "29500"}
    assert words[14:] == ["-m", "hs_rl.train", SCRIPTS[script], "--max_steps", "3", "--output_dir", "a b"]
    assert (ROOT / words[3]).is_file()


def test_stage_script_multinode_env():
    words = _dry_run("stage1.sh", NNODES="4", NODE_RANK="2", MASTER_ADDR="10.1.2.3", MASTER_PORT="6000")
    assert words[3] == "launch/accelerate/zero3_multinode.yaml"
    option = dict(zip(words[4:14:2], words[5:14:2]))
    assert option == {"--num_processes": "32", "--num_machines": "4", "--machine_rank": "2",
                      "--main_process_ip": "10.1.2.3", "--main_process_port": "6000"}


@pytest.mark.parametrize("name", ["zero2", "zero3.yaml", "ddp"])
def test_stage_script_config_choice(name):
    words = _dry_run("stage2.sh", ACCELERATE_CONFIG=name, NUM_PROCESSES="4")
    assert words[3] == f"launch/accelerate/{name.removesuffix('.yaml')}.yaml"
    assert words[words.index("--num_processes") + 1] == "4"


def test_stage_script_unknown_config():
    result = subprocess.run(["bash", str(LAUNCH / "stage1.sh")], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "HS_RL_DRY_RUN": "1", "ACCELERATE_CONFIG": "nope"})
    assert result.returncode == 2 and "no accelerate config" in result.stderr


def test_pipeline_script_passes_accelerate_as_stage_launcher():
    words = _dry_run("pipeline.sh", "--from_stage", "2", ACCELERATE_CONFIG="zero3")
    assert words[1:5] == ["-m", "hs_rl.cli", "pipeline", "stages/pipeline.yaml"]
    launcher = shlex.split(words[words.index("--launcher") + 1])
    assert launcher[:4] == ["accelerate", "launch", "--config_file", "launch/accelerate/zero3.yaml"]
    assert words[-2:] == ["--from_stage", "2"]


def test_pipeline_dry_run_builds_accelerate_stage_commands():
    """`python -m hs_rl.cli` works and the pipeline turns the launcher into one accelerate job per stage."""
    words = _dry_run("pipeline.sh", "--dry_run")
    words[0] = sys.executable
    result = subprocess.run(words, capture_output=True, text=True, timeout=120, cwd=ROOT)
    # the dry run checks every stage as a real run does: this checkout holds no 7B model and no training data
    assert result.returncode == 2, result.stderr[-2000:]
    assert "[stage1_video] model path 'models/Qwen2.5-Omni-7B' is not a local folder" in result.stderr
    stage_lines = [line for line in result.stdout.splitlines() if "-m hs_rl.train" in line]
    assert len(stage_lines) == 3, result.stdout
    for line in stage_lines:
        assert "accelerate launch --config_file launch/accelerate/zero3_offload.yaml" in line


def test_stage_scripts_are_also_python():
    """`accelerate launch launch/stage1.sh` runs the file with python: it must be a Python program too."""
    import ast

    for script in SCRIPTS:
        ast.parse((LAUNCH / script).read_text(), filename=script)


def test_stage_script_reads_stages_from_hs_rl_stages():
    words = _dry_run("stage3.sh", "--max_steps", "1", HS_RL_STAGES="stages/tiny")
    assert words[14:] == ["-m", "hs_rl.train", "stages/tiny/stage3_video_audio.yaml", "--max_steps", "1"]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_accelerate_launch_stage_script_as_written(tiny_model, sample_data, tmp_path):
    """The documented usage line, typed as a user would: `HS_RL_STAGES=stages/tiny accelerate launch --cpu
    --num_processes 2 launch/stage1.sh --output_dir X --max_steps 2` from a folder laid out like the checkout."""
    import shutil

    from hs_rl.data.convert import convert_file
    from hs_rl.data.records import write_records

    work = tmp_path / "checkout"
    (work / "experiments" / "tiny" / "data").mkdir(parents=True)
    for name in ("launch", "stages"):
        (work / name).symlink_to(ROOT / name)
    (work / "experiments" / "tiny" / "model").symlink_to(tiny_model["full"])
    records = convert_file(sample_data["train_json"], media_root=sample_data["media_root"])
    write_records([r for r in records if r.modality == "video"],
                  work / "experiments" / "tiny" / "data" / "stage1_video.jsonl")
    accelerate = shutil.which("accelerate", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                                   os.environ.get("PATH", "")]))
    assert accelerate, "the accelerate command is not installed"
    env = {**os.environ, "HS_RL_STAGES": "stages/tiny", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [accelerate, "launch", "--cpu", "--num_processes", "2", "launch/stage1.sh",
               "--output_dir", "X", "--max_steps", "2"]
    result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=360)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    final = work / "X" / "final"
    assert (final / "hs_rl_export.json").is_file() and (final / "spk_dict.pt").is_file()
    state = json.loads((work / "X" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    # accelerate 1.15 starts several CPU processes only through mpirun (or a config such as
    # launch/accelerate/zero2.yaml, which tests/test_deepspeed_cpu.py launches this script with): here it ran one
    assert json.loads((work / "X" / "checkpoint-2" / "hs_rl_complete.json").read_text())["processes"] >= 1


def test_stage_script_started_inside_a_launch_runs_its_python_part():
    """`accelerate launch --no_python launch/stage1.sh` (or torchrun --no-python) execs the file in each process:
    bash must run the Python part there, not start a second launch."""
    result = subprocess.run(["bash", str(LAUNCH / "stage1.sh"), "--help"], capture_output=True, text=True,
                            timeout=120, cwd="/", env={**os.environ, "HS_RL_DRY_RUN": "1", "LOCAL_RANK": "0",
                                                       "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "+ accelerate" not in result.stdout and "usage: hs-rl train" in result.stdout
