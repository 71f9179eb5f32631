"""The built wheel carries the reward functions (as hs_rl.rewards, no top-level `rewards`) and the package data."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_resolves_rewards_and_resources(tmp_path):
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(wheel_dir), str(ROOT)], check=True)
    wheel = next(wheel_dir.glob("hs_rl-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "hs_rl/rewards/accuracy.py" in names and not [n for n in names if n.startswith("rewards/")]
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True)
    probe = (
        "import hs_rl, hs_rl.rewards\n"
        "from hs_rl.rewards import get_reward\n"
        "from hs_rl.eval.tiers import load_tiers\n"
        "from hs_rl.data.convert import default_routing\n"
        "from hs_rl.tools.tiny_model import chat_template\n"
        f"assert hs_rl.__file__.startswith({str(target)!r}), hs_rl.__file__\n"
        f"assert hs_rl.rewards.__file__.startswith({str(target)!r}), hs_rl.rewards.__file__\n"
        "assert get_reward('accuracy')(['<answer>B</answer>'], answer=['B'], question_type=['single_choice'],"
        " options=[['A. x', 'B. y']]) == [1.0]\n"
        "assert get_reward('rewards.format:format_reward')(['<think>a</think><answer>B</answer>']) == [1.0]\n"
        "assert load_tiers() and default_routing().modality('Fraud_Recognition') == 'audio' and chat_template()\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
