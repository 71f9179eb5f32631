"""Checkpoints written before the package moved (issue 26) still load.

transformers' Trainer pickles the trainer's options into every checkpoint and final folder (`training_args.bin`,
`torch.save(self.args)`), which names each class by its import path. Everything else a checkpoint holds is
tensors (safetensors, optimizer/scheduler/RNG states) or JSON, so those class paths are the whole contract.
"""
from __future__ import annotations

import pickle
import pickletools

import pytest
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


def test_saved_weights_reload_exactly_and_a_missing_one_is_named(tiny_model, tmp_path):
    """A checkpoint's weights, saved as this release writes them, load back into a fresh thinker tensor for tensor;
    one weight removed from the file is refused naming it (not loaded through another path, not left at random)."""
    from safetensors.torch import load_file, save_file

    from hs_rl.grpo.checkpoints import load_saved_weights
    from hs_rl.omni.families import family_of_dir

    cls = family_of_dir(tiny_model["full"]).thinker_class
    trained = cls.from_pretrained(tiny_model["full"])
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.5)
    trained.save_pretrained(tmp_path / "ckpt")
    fresh = cls.from_pretrained(tiny_model["full"])
    load_saved_weights(fresh, tmp_path / "ckpt")
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), fresh.state_dict().values()))

    [file] = (tmp_path / "ckpt").glob("*.safetensors")
    tensors = load_file(file)
    dropped = sorted(tensors)[-1]
    del tensors[dropped]
    save_file(tensors, file, metadata={"format": "pt"})
    with pytest.raises(RuntimeError, match=r"lacks 1 weight\(s\)"):
        load_saved_weights(cls.from_pretrained(tiny_model["full"]), tmp_path / "ckpt")
