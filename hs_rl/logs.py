"""What hs-rl prints through `logging`: its own INFO lines, and none of the dependencies' known noise.

A base module: the entry points (hs_rl.cli, hs_rl.pipeline) and evaluation (hs_rl.eval.evaluate) set logging up the
same way without importing each other.
"""
from __future__ import annotations

import logging


def show_our_logs() -> None:
    """hs_rl's INFO lines on stderr (what a run chose: packed groups or not, the reference's shared tensors, a
    resume's checkpoint), through a handler of its own: a root handler would print again what other libraries
    already print themselves (transformers propagates under CI). Left alone when logging is already set up."""
    ours = logging.getLogger("hs_rl")
    if logging.getLogger().handlers or ours.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    ours.propagate = False


def quiet_known_noise() -> None:
    """Silence, by their exact text, the dependencies' warnings every run printed though nothing was wrong, so that a
    real warning stands out.

    - transformers 5.23's `logger.info(f"Model config {config}")` builds its text even when info is off, and that
      diffs the config against a default `Qwen2_5OmniTalkerConfig()`, whose own defaults fail transformers' token
      id check (7 "must be `None` or an integer within the vocabulary" lines per process, for every Qwen2.5-Omni,
      the released 7B's included). The check warns once per text: building that default once, quietly, spends
      exactly those seven texts and no other.
    - TRL 1.16 reads the deprecated `is_gradient_checkpointing` property (a FutureWarning per generation).
    """
    import warnings

    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    try:
        from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import Qwen2_5OmniTalkerConfig
    except ImportError:
        return
    config_logger = logging.getLogger("transformers.configuration_utils")
    def mute(record: logging.LogRecord) -> bool:
        return False

    config_logger.addFilter(mute)
    try:
        Qwen2_5OmniTalkerConfig()
    finally:
        config_logger.removeFilter(mute)
