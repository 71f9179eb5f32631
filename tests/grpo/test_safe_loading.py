"""DeepSpeed checkpoint shards are read with weights_only=True: its own classes pass, anything else is refused."""
from __future__ import annotations

import collections

import pytest
import torch

from hs_rl.grpo.safe_loading import allow_listed_deepspeed_loading


class Payload(collections.OrderedDict):
    """A class no checkpoint needs: unpickling it could run code."""


def test_deepspeed_engine_loads_its_classes_and_refuses_others(tmp_path, monkeypatch):
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum

    monkeypatch.delenv("HS_RL_TRUST_CHECKPOINTS", raising=False)
    monkeypatch.setattr(TorchCheckpointEngine, "load", TorchCheckpointEngine.load)  # undone after the test
    assert allow_listed_deepspeed_loading()
    engine = TorchCheckpointEngine.__new__(TorchCheckpointEngine)
    good = tmp_path / "optim_states.pt"
    torch.save({"loss_scaler": LossScaler(1.0), "zero_stage": ZeroStageEnum.weights, "w": torch.ones(2)}, good)
    state = engine.load(str(good), map_location="cpu")
    assert state["zero_stage"] == ZeroStageEnum.weights and torch.equal(state["w"], torch.ones(2))
    bad = tmp_path / "evil.pt"
    torch.save({"x": Payload(a=1)}, bad)
    with pytest.raises(RuntimeError, match="refused to unpickle.*HS_RL_TRUST_CHECKPOINTS"):
        engine.load(str(bad), map_location="cpu")
