"""hs-rl: multi-stage GRPO training of omni-modal models (Qwen2.5-Omni) on video, audio and video+audio.

The tree follows the data flow: `hs_rl.data` (records, media, prompts) -> `hs_rl.grpo` (trainer, checkpoints, export)
-> `hs_rl.eval` (answer and score the benchmark); `hs_rl.rewards` (the repository's top-level `rewards/` folder,
installed under this name) scores completions; `hs_rl.tools` builds offline fixtures and the demo; `train`,
`pipeline` and `cli` are the entry points. The public names below import lazily so `hs-rl --help` stays fast.
"""

import os
import sys
from importlib.machinery import PathFinder
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Every path hs-rl loads is local: never reach a hub at run time. Set here, before any entry point (hs_rl.cli,
# hs_rl.train) imports transformers or TRL, because huggingface_hub reads it once, when it is first imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

_PUBLIC = {
    "OmniGRPOTrainer": "hs_rl.grpo.trainer",
    "PromptMedia": "hs_rl.grpo.omni_inputs",
    "get_reward": "hs_rl.rewards",
}
__all__ = ["OmniGRPOTrainer", "PromptMedia", "get_reward"]

if TYPE_CHECKING:  # pragma: no cover
    from hs_rl.grpo.omni_inputs import PromptMedia
    from hs_rl.grpo.trainer import OmniGRPOTrainer
    from hs_rl.rewards import get_reward


class _SourceTreeRewards:
    """Import finder for `hs_rl.rewards` when hs_rl runs from a source tree (PYTHONPATH or an editable install).

    A built wheel holds the folder as `hs_rl/rewards/` (setup.py's package_dir); in the repository it is the
    top-level `rewards/` folder beside `hs_rl/`, which this finder serves under the same name, so there is one
    copy of the rewards and no top-level package called `rewards` is ever needed.
    """

    def __init__(self, root: Path) -> None:
        self.root = str(root)

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "hs_rl.rewards":
            return None
        return PathFinder.find_spec(fullname, [self.root])  # searches ROOT for `rewards`, names it hs_rl.rewards


_ROOT = Path(__file__).resolve().parent.parent
if not (Path(__file__).resolve().parent / "rewards").is_dir() and (_ROOT / "rewards" / "__init__.py").is_file():
    sys.meta_path.insert(0, _SourceTreeRewards(_ROOT))


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'hs_rl' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_PUBLIC[name]), name)
