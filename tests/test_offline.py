"""Offline by default: `HF_HUB_OFFLINE` is set before huggingface_hub is first imported (it reads the variable
once, then), so `hs-rl …` and `accelerate launch -m hs_rl.train` never reach a hub, not even from a processor or
tokenizer load deep inside transformers."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def hub_offline_after_importing(module: str, **env: str) -> str:
    """`huggingface_hub.constants.HF_HUB_OFFLINE` in a fresh interpreter that imported `module` first."""
    environment = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"} | env
    code = f"import {module}, huggingface_hub.constants as c; print(c.HF_HUB_OFFLINE)"
    result = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


@pytest.mark.parametrize("entry_point", ["hs_rl.cli", "hs_rl.train"])  # `hs-rl`; `python -m hs_rl.train`
def test_entry_points_run_offline(entry_point):
    assert hub_offline_after_importing(entry_point) == "True"


def test_an_explicit_choice_is_kept():
    assert hub_offline_after_importing("hs_rl.train", HF_HUB_OFFLINE="0") == "False"
