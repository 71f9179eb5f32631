"""The Omni model families hs-rl trains (a `Family` subclass each, see `base`) and how a checkpoint finds its own.

A checkpoint's family is read from its `model_type` (config.json, or a loaded model's config), never from its path.
The registry is built once, when this package is first imported: `family_of` runs in every forward.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from hs_rl.omni.families.base import Family, language_backbone, multimodal_model
from hs_rl.omni.families.qwen2_5_omni import Qwen25Omni
from hs_rl.omni.families.qwen3_omni import Qwen3Omni

FAMILIES: dict[str, Family] = {family.name: family for family in (Qwen25Omni(), Qwen3Omni())}
# every model_type of a known family's checkpoints (full and thinker-only) -> the family
_BY_MODEL_TYPE: dict[str, Family] = {t: family for family in FAMILIES.values() for t in family.model_types}
FamilyName = Literal[tuple(FAMILIES)]  # an option naming a family: TRL's parser's choices, checked by check_choices

__all__ = ["FAMILIES", "Family", "FamilyName", "family_of", "family_of_dir", "family_of_model_type", "get_family",
           "language_backbone", "model_types", "multimodal_model", "read_model_type"]


def get_family(name: str) -> Family:
    """The family called `name` (`qwen2_5_omni` or `qwen3_omni`)."""
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; hs-rl knows {', '.join(FAMILIES)}")
    return FAMILIES[name]


def model_types() -> tuple[str, ...]:
    """Every `model_type` a checkpoint of a known family may have, full ones first within each family."""
    return tuple(_BY_MODEL_TYPE)


def family_of_model_type(model_type: str | None) -> Family | None:
    """The family whose full or thinker-only checkpoint has this `model_type`, or None."""
    return _BY_MODEL_TYPE.get(model_type) if model_type is not None else None


def read_model_type(model_dir: str | Path) -> str | None:
    """`model_type` of a local checkpoint's config.json."""
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    return config.get("model_type")


def family_of_dir(model_dir: str | Path) -> Family:
    """The family of a local checkpoint, from its config.json's `model_type` (never from its path)."""
    model_type = read_model_type(model_dir)
    family = family_of_model_type(model_type)
    if family is None:
        raise ValueError(f"model {model_dir} is a {model_type!r} checkpoint; hs-rl trains the Omni families "
                         f"(model_type {', '.join(model_types())})")
    return family


def family_of(thinker) -> Family:
    """The family of a loaded thinker, from its config's `model_type` (one dict lookup: runs in every forward)."""
    config = thinker.config
    family = family_of_model_type(getattr(config, "model_type", None))
    if family is None:
        raise ValueError(f"{type(thinker).__name__} (model_type {config.model_type!r}) is not an Omni thinker")
    return family
