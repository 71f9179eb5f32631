"""The family registry: built once (it is asked in every forward), and the one source of each family fact."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest


def _thinker(model_type: str) -> SimpleNamespace:
    """What `family_of` reads off a loaded thinker: its config's model_type."""
    return SimpleNamespace(config=SimpleNamespace(model_type=model_type))


def test_family_of_reuses_one_registry():
    from hs_rl.omni.families import family_of, get_family

    first = family_of(_thinker("qwen2_5_omni_thinker"))
    assert family_of(_thinker("qwen2_5_omni_thinker")) is first is get_family("qwen2_5_omni")
    assert family_of(_thinker("qwen3_omni_moe")) is get_family("qwen3_omni")


def test_family_facts_are_derived_from_the_family_classes(tmp_path):
    from hs_rl.choices import literal_values
    from hs_rl.omni.families import FAMILIES, FamilyName, model_types
    from hs_rl.omni.loading import check_model_modalities
    from hs_rl.tools.tiny_model import TINY_FAMILIES

    assert literal_values(FamilyName) == tuple(FAMILIES) == tuple(TINY_FAMILIES)
    assert model_types() == tuple(t for family in FAMILIES.values() for t in family.model_types)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    with pytest.raises(ValueError, match="model_type " + " or ".join(model_types())):
        check_model_modalities(tmp_path, {"audio"})
