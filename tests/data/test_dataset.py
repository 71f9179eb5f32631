"""The training dataset on real files and the tiny model's real processor: a clip that breaks after validation
is replaced by a whole record with its media (or an error with fail_on_bad_media), and only our own dataset is
counted as records plus their re-fetch twins."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import datasets
import pytest

from hs_rl.data.arguments import DataArguments
from hs_rl.data.dataset import build_train_dataset, prompt_count
from hs_rl.data.media import MediaError
from tests.data.broken_media import cut_wav, sliver_video, tone_wav
from tests.grpo.trainer_helpers import sample_records


@pytest.fixture(scope="module")
def processor(tiny_model):
    from hs_rl.omni.loading import load_processor

    return load_processor(tiny_model["full"])


def _data_args(**overrides) -> DataArguments:
    return DataArguments(video_max_frames=4, video_max_pixels=25088, video_min_pixels=3136, **overrides)


def _records(sample_data, tmp_path, modality: str):
    """Two records of `modality` whose media are private copies (the first one is broken by the test)."""
    chosen = [r for r in sample_records(sample_data) if r.modality == modality][:2]
    out = []
    for i, record in enumerate(chosen):
        if modality == "audio":  # a 3 s tone, so that a cut leaves part of it
            out.append(replace(record, audio=str(tone_wav(tmp_path / f"{i}.wav", hz=500 + 200 * i))))
        else:
            target = tmp_path / f"{i}.mp4"
            shutil.copy(record.video, target)
            out.append(replace(record, video=str(target)))
    return out


def _cut_to_header(path: Path) -> None:
    cut_wav(path, 0.0)


def _cut_to_a_third(path: Path) -> None:
    cut_wav(path, 1 / 3)


def _replaced_by_a_sliver(path: Path) -> None:  # decodes, but load_video's frame rules raise (a ValueError before)
    sliver_video(path)


def _replaced_by_a_blip(path: Path) -> None:  # a whole wav of 6 ms: the processor gives it no audio token
    tone_wav(path, seconds=0.006)


BREAKS = {"wav_cut_to_header": ("audio", _cut_to_header, "truncated wav"),
          "wav_cut_to_a_third": ("audio", _cut_to_a_third, "truncated wav"),
          "wav_too_short_to_encode": ("audio", _replaced_by_a_blip, "gives the prompt no audio tokens"),
          "video_no_frame_size_fits": ("video", _replaced_by_a_sliver, "aspect ratio above 200")}


@pytest.mark.parametrize("name", list(BREAKS))
def test_file_broken_after_validation_is_replaced_by_a_whole_record(processor, sample_data, tmp_path, name):
    modality, breaks, problem = BREAKS[name]
    records = _records(sample_data, tmp_path, modality)
    dataset = build_train_dataset(records, processor, _data_args())
    broken = Path(records[0].audio or records[0].video)
    breaks(broken)
    row, substitute = dataset[0], dataset[1]
    assert row["id"] == records[1].id and substitute["id"] == records[1].id
    assert f"record {records[0].id}" in row["media_problem"] and broken.name in row["media_problem"]
    assert problem in row["media_problem"]
    assert not substitute["media_problem"]
    # the substitute is the next record with all its media: the same tokens and the same work as its own row
    assert row["media"].input_ids.tolist() == substitute["media"].input_ids.tolist()
    assert (row["media"].has_audio, row["media"].has_video) == (modality == "audio", modality == "video")


@pytest.mark.parametrize("name", list(BREAKS))
def test_fail_on_bad_media_names_record_and_file(processor, sample_data, tmp_path, name):
    modality, breaks, problem = BREAKS[name]
    records = _records(sample_data, tmp_path, modality)
    dataset = build_train_dataset(records, processor, _data_args(fail_on_bad_media=True))
    broken = Path(records[0].audio or records[0].video)
    breaks(broken)
    with pytest.raises(MediaError, match=rf"record {records[0].id}: {broken}: .*{problem}"):
        dataset[0]


def test_prompt_count_knows_our_dataset_not_a_column_name(processor, sample_data, tmp_path):
    records = _records(sample_data, tmp_path, "video")
    ours = build_train_dataset(records, processor, _data_args())
    assert len(ours) == 4 and prompt_count(ours) == 2
    theirs = datasets.Dataset.from_dict({"prompt": ["a", "b", "c", "d"], "repeat": [1, 2, 1, 2]})
    assert prompt_count(theirs) is None  # a user's column named `repeat` says nothing about the rows
    assert prompt_count(theirs.with_transform(lambda batch: batch)) is None
    assert prompt_count(list(range(4))) is None


def test_prompt_cache_size_decodes_a_kept_record_once(processor, sample_data, tmp_path, monkeypatch):
    """Two sweeps over six records: the default (4) decodes every record in both sweeps, a cache as large as the
    set decodes each once and gives the same rows; a negative size is refused when the options are read."""
    import hs_rl.data.dataset as dataset_module

    records = [r for r in sample_records(sample_data) if r.modality in ("video", "audio", "video_audio")][:6]
    assert len(records) == 6
    decoded: list[str] = []
    real = dataset_module.prepare_prompt

    def counting(record, *args, **kwargs):
        decoded.append(record.id)
        return real(record, *args, **kwargs)

    monkeypatch.setattr(dataset_module, "prepare_prompt", counting)
    rows = {}
    for size, decodes in ((4, 12), (6, 6)):
        decoded.clear()
        dataset = build_train_dataset(records, processor, _data_args(prompt_cache_size=size))
        rows[size] = [dataset[i % 6] for i in range(12)]
        assert len(decoded) == decodes, (size, decoded)
    for plain, kept in zip(rows[4], rows[6]):
        assert plain["id"] == kept["id"] and plain["media"].input_ids.equal(kept["media"].input_ids)
    with pytest.raises(ValueError, match="prompt_cache_size"):
        _data_args(prompt_cache_size=-1)
