"""hs-rl: multi-stage GRPO training of omni-modal models (Qwen2.5-Omni) on video, audio and video+audio.

The tree follows the data flow: `hs_rl.data` (records, media, prompts) -> `hs_rl.grpo` (trainer, checkpoints, export)
-> `hs_rl.eval` (answer and score the benchmark); `hs_rl.tools` builds offline fixtures and the demo; `train`,
`pipeline` and `cli` are the entry points. The public names below import lazily so `hs-rl --help` stays fast.
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "OmniGRPOTrainer": "hs_rl.grpo.trainer",
    "PromptMedia": "hs_rl.grpo.omni_inputs",
    "get_reward": "hs_rl.rewards",
}
__all__ = list(_PUBLIC)

if TYPE_CHECKING:  # pragma: no cover
    from hs_rl.grpo.omni_inputs import PromptMedia
    from hs_rl.grpo.trainer import OmniGRPOTrainer
    from hs_rl.rewards import get_reward


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'hs_rl' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_PUBLIC[name]), name)
