"""Resume DeepSpeed checkpoints without unpickling arbitrary objects.

transformers and TRL read weights with safetensors and optimizer/scheduler/RNG states with
`torch.load(weights_only=True)`. DeepSpeed's checkpoint engine reads its ZeRO shards with
`weights_only=False`, i.e. full pickle. `allow_listed_deepspeed_loading()` makes it read them with
`weights_only=True`, allowing only the DeepSpeed classes its CPU and GPU checkpoints hold (found by loading
ZeRO-2 and ZeRO-3 checkpoints written by hs-rl). A checkpoint needing anything else is refused with the name
of the class; `HS_RL_TRUST_CHECKPOINTS=1` restores DeepSpeed's own loading for files you trust.
"""
from __future__ import annotations

import os

import torch


def deepspeed_checkpoint_classes() -> list:
    """The classes a DeepSpeed ZeRO checkpoint legitimately contains."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


def allow_listed_deepspeed_loading() -> bool:
    """Patch DeepSpeed's torch checkpoint engine to load with weights_only=True (once; True if patched)."""
    if os.environ.get("HS_RL_TRUST_CHECKPOINTS") == "1":
        return False
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

    if getattr(TorchCheckpointEngine.load, "_hs_rl_safe", False):
        return True
    classes = deepspeed_checkpoint_classes()

    def load(self, path: str, map_location=None):
        with torch.serialization.safe_globals(classes):
            try:
                return torch.load(path, map_location=map_location, weights_only=True)
            except torch.serialization.pickle.UnpicklingError as err:
                raise RuntimeError(
                    f"{path}: refused to unpickle it ({str(err).splitlines()[0]}); hs-rl loads DeepSpeed "
                    "checkpoints with weights_only=True and allows only DeepSpeed's own classes. If you wrote this "
                    "file yourself, set HS_RL_TRUST_CHECKPOINTS=1 to load it with DeepSpeed's pickle loader."
                ) from err

    load._hs_rl_safe = True
    TorchCheckpointEngine.load = load
    return True
