"""Checkpoints written before the package moved (issue 26) still load.

transformers' Trainer pickles the trainer's options into every checkpoint and final folder (`training_args.bin`,
`torch.save(self.args)`), which names each class by its import path. Everything else a checkpoint holds is
tensors (safetensors, optimizer/scheduler/RNG states) or JSON, so those class paths are the whole contract.
"""
from __future__ import annotations

import pickle
import pickletools

import torch

# the hs_rl classes checkpoints written so far name, by (module, class): they must import from there forever
PICKLED_BY_OLD_CHECKPOINTS = {("hs_rl.grpo.config", "OmniGRPOConfig")}


def _hs_rl_globals(data: bytes) -> set[tuple[str, str]]:
    """The (module, name) of every hs_rl class a protocol-2 pickle refers to."""
    found = set()
    for opcode, arg, _ in pickletools.genops(data):
        if opcode.name == "GLOBAL" and arg.startswith("hs_rl"):
            module, name = arg.split(" ", 1)
            found.add((module, name))
    return found


def test_old_checkpoints_training_args_load(tmp_path):
    from hs_rl.grpo.config import OmniGRPOConfig

    for module, name in PICKLED_BY_OLD_CHECKPOINTS:  # an old training_args.bin names the class like this
        assert pickle.loads(f"c{module}\n{name}\n.".encode()) is OmniGRPOConfig
    config = OmniGRPOConfig(output_dir=str(tmp_path), reward_funcs=["format"], report_to="none", beta=0.04,
                            use_cpu=True, bf16=False)
    # what a checkpoint written today names: nothing beyond what the old ones do, so neither side breaks
    assert _hs_rl_globals(pickle.dumps(config, protocol=2)) <= PICKLED_BY_OLD_CHECKPOINTS
    torch.save(config, tmp_path / "training_args.bin")  # as Trainer._save writes it
    loaded = torch.load(tmp_path / "training_args.bin", weights_only=False)
    assert type(loaded) is OmniGRPOConfig and loaded.reward_funcs == ["format"] and loaded.beta == 0.04
