"""Replay of earlier stages' records and held-out probes measured while a stage trains (issue 24): the draw, the
pipeline's names, a real stage on the tiny model (its dataset, TRL's evaluation per probe, progress.json), the
demo's table and curves."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from hs_rl.data.records import Record, write_records
from hs_rl.errors import UserError


def _records(prefix: str, modality: str, count: int) -> list[Record]:
    return [Record(id=f"{prefix}{i}", task_type="T", modality=modality, question="q?", question_type="single_choice",
                   answer="A", options=["A. a", "B. b"], video=f"{prefix}{i}.mp4") for i in range(count)]


def test_replay_draw_is_sized_by_fraction_and_reproducible(tmp_path):
    from hs_rl.data.replay import describe_draws, draw_replay, parse_replay

    sources = {"video": _records("v", "video", 64), "audio": _records("a", "audio", 40)}
    for name, records in sources.items():
        write_records(records, tmp_path / f"{name}.jsonl")
    replay = parse_replay(json.dumps({str(tmp_path / "video.jsonl"): 0.25, str(tmp_path / "audio.jsonl"): 0.1}))

    def load(source: str) -> list[Record]:
        return sources[Path(source).stem]

    drawn, draws = draw_replay(64, replay, seed=42, load=load)
    assert [d.records for d in draws] == [16, 6] and len(drawn) == 22  # round(0.25 x 64), round(0.1 x 64)
    assert [d.modalities for d in draws] == [{"video": 16}, {"audio": 6}]
    assert len({r.id for r in drawn}) == 22  # without replacement
    again, _ = draw_replay(64, replay, seed=42, load=load)
    other, _ = draw_replay(64, replay, seed=43, load=load)
    assert [r.id for r in again] == [r.id for r in drawn]  # every rank, every resume: the same list
    assert [r.id for r in other] != [r.id for r in drawn]
    line = describe_draws(draws, 64)
    assert "16 records (of 64)" in line and "64 own + 22 replayed = 86" in line
    with pytest.raises(UserError, match="holds 40 records: lower the fraction to at most 0.62"):
        draw_replay(64, {str(tmp_path / "audio.jsonl"): 1.0}, seed=0, load=load)
    with pytest.raises(UserError, match="does not exist"):
        draw_replay(64, {str(tmp_path / "missing.jsonl"): 0.5}, seed=0, load=load)
    with pytest.raises(UserError, match="a number above 0"):
        parse_replay({"x.jsonl": -1})


def _pipeline(tmp_path: Path, stage3_replay: str) -> Path:
    for name in ("s1_video", "s2_audio", "s3_video_audio"):
        (tmp_path / f"{name}.yaml").write_text(f"dataset: data/{name}.jsonl\n")
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"""output_dir: {tmp_path / 'run'}
model_name_or_path: {tmp_path / 'model'}
stages:
  - {{name: s1_video, config: s1_video.yaml, dataset: {tmp_path / 'v.jsonl'}}}
  - {{name: s2_audio, config: s2_audio.yaml, replay: {{s1_video: 0.25}}}}
  - {{name: s3_video_audio, config: s3_video_audio.yaml, replay: {stage3_replay}}}
""")
    return path


def test_pipeline_replay_names_earlier_stages_and_passes_their_datasets(tmp_path):
    from hs_rl.pipeline import PipelineArguments, load_pipeline, parse_overrides, plan_stages, stage_command

    path = _pipeline(tmp_path, "{s1_video: 0.1, s2_audio: 0.2}")
    spec = load_pipeline(path)
    names = [s.name for s in spec.stages]
    overrides = parse_overrides([f"s2_audio.dataset={tmp_path / 'a.jsonl'}"], names)
    plans = plan_stages(PipelineArguments(pipeline=str(path)), spec, tmp_path / "run", [0, 1, 2], overrides, set())
    # a stage's dataset as its run resolves it: the pipeline entry, an override, else its YAML
    assert plans[1].options["replay"] == {str(tmp_path / "v.jsonl"): 0.25}
    assert plans[2].options["replay"] == {str(tmp_path / "v.jsonl"): 0.1, str(tmp_path / "a.jsonl"): 0.2}
    words = stage_command(["python"], plans[2].stage, plans[2].options)
    assert json.loads(words[words.index("--replay") + 1]) == plans[2].options["replay"]  # one JSON word
    with pytest.raises(UserError, match="'s3_video_audio' is not an earlier stage"):
        load_pipeline(_pipeline(tmp_path, "{s3_video_audio: 0.1}"))
    with pytest.raises(UserError, match="neither an earlier stage .* did you mean 's2_audio'"):
        load_pipeline(_pipeline(tmp_path, "{s2_audoi: 0.1}"))
    with pytest.raises(UserError, match="a number above 0"):
        load_pipeline(_pipeline(tmp_path, "{s1_video: zero}"))


@pytest.fixture(scope="module")
def records(sample_data):
    from tests.grpo.trainer_helpers import sample_records

    return sample_records(sample_data)


def test_stage_trains_on_replay_and_measures_each_probe(tiny_model, records, tmp_path):
    """A real stage: audio records plus replayed video ones; TRL's evaluation on two probes every step, each logged
    under its own name, with the rows' own media (a media-free re-fetch row reaching generation is an error)."""
    from hs_rl.data.dataset import prompt_count
    from hs_rl.train import build_trainer
    from tests.grpo.trainer_helpers import stage_args

    video = [r for r in records if r.modality == "video"]
    audio = [r for r in records if r.modality == "audio"]
    write_records(video, tmp_path / "video.jsonl")
    write_records(video[:2], tmp_path / "probe_video.jsonl")
    write_records(audio[:2], tmp_path / "probe_audio.jsonl")
    own = audio[:4]
    data_args, config, model_args = stage_args(
        tiny_model["full"], own, tmp_path / "run", max_steps=2, replay={str(tmp_path / "video.jsonl"): 0.5},
        probe_datasets={"video": str(tmp_path / "probe_video.jsonl"), "audio": str(tmp_path / "probe_audio.jsonl")},
        eval_strategy="steps", eval_steps=1, num_generations_eval=2, per_device_eval_batch_size=4)
    trainer = build_trainer(data_args, config, model_args)
    assert prompt_count(trainer.train_dataset) == 6  # 4 own + round(0.5 x 4) replayed
    trained_on = {trainer.train_dataset[i]["id"] for i in range(6)}
    assert {r.id for r in own} < trained_on and len(trained_on & {r.id for r in video}) == 2
    trainer.train()
    logged = [h for h in trainer.state.log_history if any(k.startswith("eval_") for k in h)]
    for name in ("video", "audio"):
        steps = [h["step"] for h in logged if f"eval_{name}_rewards/accuracy_reward/mean" in h]
        assert steps == [1, 2], (name, logged)
    assert not any(k.startswith("eval_rewards/") for h in logged for k in h)  # every probe named
    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert progress["replay"][0]["records"] == 2 and progress["replay"][0]["modalities"] == {"video": 2}
    assert progress["probes"] == {"video": 2, "audio": 2}
    assert "eval_audio_rewards/accuracy_reward/mean" in progress["probe_metrics"]


def test_probes_without_evaluation_steps_are_refused(tiny_model, records, tmp_path):
    from hs_rl.train import build_trainer
    from tests.grpo.trainer_helpers import stage_args

    write_records(records[:2], tmp_path / "probe.jsonl")
    args = stage_args(tiny_model["full"], records[:4], tmp_path / "run",
                      probe_datasets={"mixed": str(tmp_path / "probe.jsonl")})
    with pytest.raises(ValueError, match="set eval_strategy: steps and eval_steps"):
        build_trainer(*args)


def _table(stage3_audio: float, base_video: float = 0.25) -> dict:
    families = ("video", "audio", "video_audio")
    accuracy = {"base": {"video": 0.53, "audio": 0.06, "video_audio": 0.19, "format": 1.0},
                "stage1_video": {"video": 1.0, "audio": 0.25, "video_audio": 0.5, "format": 1.0},
                "stage2_audio": {"video": 0.94, "audio": 1.0, "video_audio": 0.5, "format": 1.0},
                "stage3_video_audio": {"video": 0.94, "audio": stage3_audio, "video_audio": 1.0, "format": 0.97}}
    right = {"base": {"video": base_video, "audio": 0.25, "video_audio": 0.25},
             "stage1_video": {"video": 0.98, "audio": 0.25, "video_audio": 0.48},
             "stage2_audio": {"video": 0.93, "audio": 0.99, "video_audio": 0.5},
             "stage3_video_audio": {"video": 0.9, "audio": 0.9, "video_audio": 0.96}}
    return {"chance": dict.fromkeys(families, 0.25), "accuracy": accuracy, "right_letter_probability": right}


def test_table_says_what_each_model_knows_and_which_targets_are_missed():
    from hs_rl.tools.demo import format_learning_table, missed_targets

    assert missed_targets(_table(1.0)) == []  # the base's greedy 0.53 / 0.06 is luck, not a miss
    assert missed_targets(_table(0.88, base_video=0.6)) == [
        "base video: right-letter probability 0.60, not within 0.15 of chance 0.25",
        "stage3_video_audio audio: accuracy 0.88 < 0.9"]
    printed = format_learning_table(_table(0.88)).splitlines()
    assert printed[0].startswith("what each model knows")
    assert printed[2].split() == ["base", "(after", "format", "warm-up)", "chance", "0.25", "chance", "0.25",
                                  "chance", "0.25", "1.00"]
    assert printed[3].split()[1:] == ["knows", "0.98", "chance", "0.25", "partly", "0.48", "1.00"]
    assert printed[-1] == "targets missed (1): stage3_video_audio audio: accuracy 0.88 < 0.9"
    assert not any(line.startswith("base") for line in printed[6:])  # no greedy row for the undecided base


def test_curves_draw_a_panel_of_probes(tmp_path):
    from hs_rl.data.probes import probe_series
    from hs_rl.plots import plot_history

    history = [{"step": s, "reward": 1.0, "rewards/accuracy/mean": 0.5, "kl": 0.1} for s in (1, 2, 3)]
    probes = [{"step": s, "eval_video_audio_rewards/accuracy/mean": v, "eval_video_rewards/format_reward/mean": 1.0,
               "eval_video_rewards/accuracy/mean": 1 - v} for s, v in ((0, 0.25), (3, 0.75))]
    assert probe_series(history + probes) == {"video_audio": [(0, 0.25), (3, 0.75)], "video": [(0, 0.75), (3, 0.25)]}

    def width(path: Path) -> int:  # a PNG's IHDR width
        return struct.unpack(">I", path.read_bytes()[16:20])[0]

    assert width(plot_history(history + probes, tmp_path / "with.png")) > width(plot_history(history,
                                                                                            tmp_path / "without.png"))
