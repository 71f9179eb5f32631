"""Bad input is refused before weights load; broken media, failing rewards and config typos are handled."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from hs_rl.data.dataset import prompt_count
from hs_rl.data.media import MediaError
from hs_rl.rewards.guard import RewardError
from hs_rl.train import build_trainer
from tests.grpo.trainer_helpers import interleaved, sample_records, stage_args


@pytest.fixture(scope="module")
def records(sample_data):
    return sample_records(sample_data)


def _weights_never_loaded(monkeypatch):
    import hs_rl.omni.loading

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded before the input was checked")

    monkeypatch.setattr(hs_rl.omni.loading, "load_thinker", refuse)


def test_invalid_records_refused_before_weights(tiny_model, records, tmp_path, monkeypatch):
    chosen = interleaved(records, count=4)
    chosen[1] = replace(chosen[1], question_type="single_choice", options=["A. x", "B. y", "C. z", "D. w"],
                        answer="E")
    _weights_never_loaded(monkeypatch)
    with pytest.raises(ValueError, match=r"line 2.*E"):
        build_trainer(*stage_args(tiny_model["full"], chosen, tmp_path))


def test_skip_invalid_drops_and_lists_them(tiny_model, records, tmp_path):
    chosen = interleaved(records, count=5)
    chosen[1] = replace(chosen[1], question_type="single_choice", options=["A. x", "B. y"], answer="E")
    trainer = build_trainer(*stage_args(tiny_model["full"], chosen, tmp_path, skip_invalid=True))
    assert prompt_count(trainer.train_dataset) == 4  # its rows: 4 records, then their media-free re-fetch twins
    dropped = [json.loads(x) for x in (tmp_path / "dropped_records.jsonl").read_text().splitlines()]
    assert len(dropped) == 1 and "E" in json.dumps(dropped[0])


def _copy_media(records, tmp_path):
    """The records with their media copied into tmp_path, so a test can break a file safely."""
    import shutil

    out = []
    for i, r in enumerate(records):
        fields = {}
        for key in ("video", "audio"):
            path = getattr(r, key)
            if path:
                target = tmp_path / f"{i}_{Path(path).name}"
                shutil.copy(path, target)
                fields[key] = str(target)
        out.append(replace(r, **fields))
    return out


def test_media_broken_after_validation_is_replaced_and_counted(tiny_model, records, tmp_path):
    chosen = _copy_media(interleaved(records, ("video",), count=3), tmp_path)
    trainer = build_trainer(*stage_args(tiny_model["full"], chosen, tmp_path / "run", per_device_train_batch_size=6,
                                        num_generations=2))
    broken = Path(chosen[0].video)
    broken.write_bytes(broken.read_bytes()[:200])  # truncated after validation passed
    trainer.train()
    logged = next(h for h in trainer.state.log_history if "media/replaced_samples" in h)
    assert logged["media/replaced_samples"] > 0


def test_wav_shorter_than_its_header_refused_at_start_up(tiny_model, records, tmp_path, monkeypatch):
    """A wav holding a third of what its header declares decoded without an error (what was left of it)."""
    from tests.data.broken_media import cut_wav

    chosen = _copy_media(interleaved(records, ("video", "audio"), count=4), tmp_path)
    short = cut_wav(Path(chosen[1].audio), 1 / 3)
    _weights_never_loaded(monkeypatch)
    with pytest.raises(ValueError, match=rf"line 2 \[{chosen[1].id}\]: audio does not decode: {short}: truncated "
                                         r"wav, its header declares 1.00 s of audio and the file holds 0.33 s"):
        build_trainer(*stage_args(tiny_model["full"], chosen, tmp_path / "run"))


def test_wav_cut_to_its_header_after_validation_is_replaced_and_counted(tiny_model, records, tmp_path):
    """It decoded to zero samples without an error: the step trained on a question with no audio, counting nothing."""
    from tests.data.broken_media import cut_wav

    chosen = _copy_media(interleaved(records, ("audio",), count=3), tmp_path)
    trainer = build_trainer(*stage_args(tiny_model["full"], chosen, tmp_path / "run", per_device_train_batch_size=6,
                                        num_generations=2))
    cut_wav(Path(chosen[0].audio), 0.0)  # cut to its 44-byte header after validation passed
    trainer.train()
    logged = next(h for h in trainer.state.log_history if "media/replaced_samples" in h)
    assert logged["media/replaced_samples"] == 2  # the prompt's two rows, each the next record with its audio


def test_fail_on_bad_media_names_the_file(tiny_model, records, tmp_path):
    chosen = _copy_media(interleaved(records, ("video",), count=3), tmp_path)
    trainer = build_trainer(*stage_args(tiny_model["full"], chosen, tmp_path / "run", fail_on_bad_media=True))
    broken = Path(chosen[0].video)
    broken.write_bytes(broken.read_bytes()[:200])
    with pytest.raises(MediaError, match=broken.name):
        trainer.train()


def _reward_file(tmp_path: Path) -> str:
    path = tmp_path / "bad_reward.py"
    path.write_text(
        "import math\n"
        "def explodes(completions, **kw):\n"
        "    raise RuntimeError('boom')\n"
        "def not_finite(completions, **kw):\n"
        "    return [math.nan for _ in completions]\n")
    return str(path)


@pytest.mark.parametrize("function", ["explodes", "not_finite"])
def test_reward_error_names_reward_sample_and_completion(tiny_model, records, tmp_path, function):
    trainer = build_trainer(*stage_args(tiny_model["full"], interleaved(records, count=4), tmp_path,
                                        reward_funcs=["accuracy", f"{_reward_file(tmp_path)}:{function}"]))
    with pytest.raises(RewardError, match=rf"reward '{function}'.* on sample '[^']+', completion"):
        trainer.train()


def test_reward_errors_zero_scores_and_counts(tiny_model, records, tmp_path):
    trainer = build_trainer(*stage_args(tiny_model["full"], interleaved(records, count=4), tmp_path,
                                        reward_errors="zero",
                                        reward_funcs=["accuracy", f"{_reward_file(tmp_path)}:explodes"]))
    trainer.train()
    logged = next(h for h in trainer.state.log_history if "rewards/explodes/errors" in h)
    assert logged["rewards/explodes/errors"] == 4
    import math

    assert all(math.isfinite(h["loss"]) for h in trainer.state.log_history if "loss" in h)


def test_config_checks_before_weights(tiny_model, records, tmp_path, monkeypatch):
    chosen = interleaved(records, count=4)
    _weights_never_loaded(monkeypatch)
    with pytest.raises(FileNotFoundError, match="not a local folder"):
        build_trainer(*stage_args(tmp_path / "nowhere", chosen, tmp_path / "a"))
    data, config, model = stage_args(tiny_model["full"], chosen, tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_trainer(replace(data, dataset=str(tmp_path / "missing.jsonl")), config, model)
    with pytest.raises(ValueError, match=r"divisible by num_generations \(3\)"):  # TRL checks it when parsing
        build_trainer(*stage_args(tiny_model["full"], chosen, tmp_path / "c", num_generations=3))
    vl = tmp_path / "vl_model"
    vl.mkdir()
    (vl / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    with pytest.raises(ValueError, match="qwen2_5_vl.*audio"):
        build_trainer(*stage_args(vl, chosen, tmp_path / "d"))


def test_yaml_typo_names_key_and_suggestion(tmp_path):
    stage = tmp_path / "stage.yaml"
    stage.write_text("learning_rate: 1.0e-6\nnum_generation: 8\n")
    result = subprocess.run([sys.executable, "-m", "hs_rl.cli", "train", str(stage)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "unknown key 'num_generation'" in result.stderr and "num_generations" in result.stderr


def test_yaml_is_loaded_safely(tmp_path):
    stage = tmp_path / "stage.yaml"
    stage.write_text("learning_rate: !!python/object/apply:os.system ['echo pwned > " + str(tmp_path / "x") + "']\n")
    result = subprocess.run([sys.executable, "-m", "hs_rl.cli", "train", str(stage)], capture_output=True, text=True)
    assert result.returncode != 0
    assert not (tmp_path / "x").exists()
