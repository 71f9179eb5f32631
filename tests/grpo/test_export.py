"""Full Omni export: trained thinker + the base model's talker, token2wav and spk_dict.pt, verified and atomic."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch


def _trained_thinker(base: Path, out: Path, shift: float = 0.5) -> dict[str, torch.Tensor]:
    """A 'trained' thinker: the base thinker with its language-model weights moved, saved like the trainer does."""
    from hs_rl.omni.loading import load_processor, load_thinker

    thinker = load_thinker(base)
    with torch.no_grad():
        for name, param in thinker.named_parameters():
            if "layers" in name and "audio" not in name and "visual" not in name:
                param.add_(shift)
    thinker.save_pretrained(out)
    load_processor(base).save_pretrained(out)
    return {k: v.clone() for k, v in thinker.state_dict().items()}


def test_full_export_loads_and_keeps_talker(omni_model, tmp_path):
    """Both families: Qwen2.5-Omni keeps talker + token2wav + spk_dict.pt, Qwen3-Omni talker + code2wav."""
    from hs_rl.omni.export import export_model, is_exported
    from hs_rl.omni.families import family_of_dir
    from hs_rl.omni.loading import load_thinker

    tiny_model = omni_model
    family = family_of_dir(tiny_model["full"])
    trained = _trained_thinker(tiny_model["full"], tmp_path / "thinker")
    final = export_model(tmp_path / "thinker", tiny_model["full"], tmp_path / "final")
    assert is_exported(final) and all((final / name).is_file() for name in family.side_files)
    assert json.loads((final / "config.json").read_text())["architectures"] == [family.full_class_name]
    full = family.full_class.from_pretrained(final)
    base = family.full_class.from_pretrained(tiny_model["full"])
    for key, value in full.thinker.state_dict().items():
        assert torch.equal(value, trained[key]), key
    base_state = base.state_dict()
    kept = [key for key in full.state_dict() if key.startswith(family.non_thinker_prefixes())]
    assert {key.split(".")[0] for key in kept} == {p.rstrip(".") for p in family.non_thinker_prefixes()}
    for key in kept:
        assert torch.equal(full.state_dict()[key], base_state[key]), key
    # the next stage trains from it: hs_rl.omni.loading loads a thinker from a full folder
    again = load_thinker(final).state_dict()
    assert all(torch.equal(again[k], trained[k]) for k in trained)
    # and it can speak: the trained thinker's reply goes through the kept talker and token2wav to a waveform
    from hs_rl.omni.loading import load_processor
    from hs_rl.tools.tiny_model import tiny_family

    processor = load_processor(final)
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
                                         add_generation_prompt=True, tokenize=False)
    torch.manual_seed(0)
    wav = tiny_family(family.name).speak(full.eval(), processor, text)
    assert wav.numel() > 0 and torch.isfinite(wav).all()


def test_thinker_only_base_exports_thinker_only(tiny_model, tmp_path):
    from hs_rl.omni.export import export_model
    from hs_rl.omni.loading import load_thinker

    trained = _trained_thinker(tiny_model["thinker"], tmp_path / "thinker", shift=0.25)
    final = export_model(tmp_path / "thinker", tiny_model["thinker"], tmp_path / "final")
    assert not (final / "spk_dict.pt").exists()
    assert "Thinker" in json.loads((final / "config.json").read_text())["architectures"][0]
    loaded = load_thinker(final).state_dict()
    assert all(torch.equal(loaded[k], trained[k]) for k in trained)


def test_failed_export_leaves_previous_final_untouched(tiny_model, tmp_path, monkeypatch):
    import hs_rl.omni.export as export

    _trained_thinker(tiny_model["full"], tmp_path / "thinker")
    final = export.export_model(tmp_path / "thinker", tiny_model["full"], tmp_path / "final")
    before = (final / "model.safetensors").read_bytes()
    _trained_thinker(tiny_model["full"], tmp_path / "thinker", shift=1.0)

    def broken(*args, **kwargs):
        raise RuntimeError("simulated verification failure")

    monkeypatch.setattr(export, "verify_full", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        export.export_model(tmp_path / "thinker", tiny_model["full"], tmp_path / "final")
    assert (final / "model.safetensors").read_bytes() == before and export.is_exported(final)
