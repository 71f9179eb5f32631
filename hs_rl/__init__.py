"""hs-rl: multi-stage GRPO training of omni-modal models (Qwen2.5-Omni, Qwen3-Omni) on video, audio and video+audio.

The tree follows the data flow, and its imports run one way (tests/test_layers.py): base modules (errors,
atomic_files, choices, progress, logs) -> `hs_rl.data` (records, media, prompts, a record -> `PromptMedia`) ->
`hs_rl.omni` (the Omni model runtime: families, per-row inputs, generation, model loading, export) ->
`hs_rl.rewards` (scores completions) -> `hs_rl.grpo` (trainer, checkpoints) and `hs_rl.eval` (answer and score the
benchmark) -> the entry points `train`, `pipeline`, `preflight`, `status`, `commands` and `cli` -> `hs_rl.tools`
(offline fixtures and the demo). The public names below import lazily so `hs-rl --help` stays fast.

`hs_rl.rewards` is the repository's top-level `rewards/` folder under that name, by setup.py's `package_dir`
alone: a wheel holds it as `hs_rl/rewards/`, and an editable install (`pip install -e .`, scripts/setup.sh) maps
the name to the folder in the source tree. A source tree that is only on PYTHONPATH, not installed, has no
`hs_rl.rewards`.
"""

import os
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Every path hs-rl loads is local: never reach a hub at run time. Set here, before any entry point (hs_rl.cli,
# hs_rl.train) imports transformers or TRL, because huggingface_hub reads it once, when it is first imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

_PUBLIC = {
    "OmniGRPOTrainer": "hs_rl.grpo.trainer",
    "PromptMedia": "hs_rl.data.prompt_media",
    "get_reward": "hs_rl.rewards",
}
__all__ = ["OmniGRPOTrainer", "PromptMedia", "get_reward"]

if TYPE_CHECKING:  # pragma: no cover
    from hs_rl.data.prompt_media import PromptMedia
    from hs_rl.grpo.trainer import OmniGRPOTrainer
    from hs_rl.rewards import get_reward


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'hs_rl' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_PUBLIC[name]), name)
