"""Shared fixtures: the tiny model and the generated sample data, built once per test session, offline."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory) -> dict[str, Path]:
    """Paths written by `hs_rl.tools.sample_data.make_sample_data` (see its docstring for the keys)."""
    from hs_rl.tools.sample_data import make_sample_data

    return make_sample_data(tmp_path_factory.mktemp("sample_data"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> dict[str, Path]:
    """Paths written by `hs_rl.tools.tiny_model.make_tiny_model`: keys `full` (full Omni) and `thinker`."""
    from hs_rl.tools.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def tiny_qwen3_model(tmp_path_factory) -> dict[str, Path]:
    """The tiny Qwen3-Omni (`make_tiny_model(..., family="qwen3_omni")`): keys `full` and `thinker`."""
    from hs_rl.tools.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny_qwen3_model"), family="qwen3_omni")


FAMILIES = ("qwen2_5_omni", "qwen3_omni")


@pytest.fixture(scope="session", params=FAMILIES)
def omni_model(request) -> dict[str, Path]:
    """The tiny model of each family in turn (tests that hold for both families take this one)."""
    return request.getfixturevalue("tiny_model" if request.param == "qwen2_5_omni" else "tiny_qwen3_model")


def pytest_collection_modifyitems(config, items) -> None:
    """A `@pytest.mark.gpu` test is skipped, saying why, where no CUDA device is visible (this machine, CI)."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none visible); its CPU twin runs in the fast lane")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)
