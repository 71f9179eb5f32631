"""It learns: GRPO on the demo curriculum moves held-out accuracy from chance, through the media, and keeps it.

Seeded end to end (curriculum, model, warm-up, stages). The tests assert the demo's own targets
(hs_rl.tools.demo.missed_targets: what the README promises on any machine, within the spread over seeds), not one
machine's numbers: float reductions differ between machines and sampling follows them. Chance is 0.25 (4 options).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAGE1 = REPO / "stages" / "demo" / "stage1_video.yaml"


def test_curriculum_answers_come_from_the_media_only(tmp_path):
    """Per family: one question text and option list, balanced answers, clips apart, routed by task type."""
    from collections import Counter

    from hs_rl.data.convert import convert_file
    from hs_rl.data.media import has_audio_track
    from hs_rl.tools.curriculum import FAMILIES, heldout_records, make_curriculum

    paths = make_curriculum(tmp_path / "a", seed=1, train_per_class=2, heldout_per_class=1)
    train = convert_file(paths["train_json"], media_root=paths["root"])
    for family, task in FAMILIES.items():
        mine = [r for r in train if r.task_type == task]
        held = heldout_records(paths["root"], family)
        assert {r.modality for r in mine + held} == {family}
        assert len({(r.question, tuple(r.options)) for r in mine + held}) == 1 and len(mine[0].options) == 4
        assert Counter(r.answer for r in mine) == {"A": 2, "B": 2, "C": 2, "D": 2}
        assert not {r.video or r.audio for r in mine} & {r.video or r.audio for r in held}
        if family != "audio":
            assert all(has_audio_track(r.video) == (family == "video_audio") for r in mine)
    other = make_curriculum(tmp_path / "b", seed=2, train_per_class=2, heldout_per_class=1)
    first = sorted(p.read_bytes() for p in (tmp_path / "a" / "media").glob("*.wav"))
    second = sorted(p.read_bytes() for p in (tmp_path / "b" / "media").glob("*.wav"))
    assert first != second and other["train_json"].is_file()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """`hs-rl demo` as shipped (seed 0, every stage at its YAML's settings), then its learning table."""
    from hs_rl.tools.demo import DemoArguments, run_demo

    root = tmp_path_factory.mktemp("demo_learning")
    assert run_demo(DemoArguments(output_dir=str(root))) == 0
    return root, json.loads((root / "report" / "learning.json").read_text())


@pytest.mark.slow
def test_each_stage_learns_its_family_and_keeps_the_earlier_ones(demo_run):
    """Every target of the table: base at chance (by the right letter's probability), stage 1 video >= 0.9, stage 2
    audio >= 0.9 and video >= 0.85, stage 3 every family >= 0.9, format >= 0.95."""
    from hs_rl.tools.demo import missed_targets

    _, table = demo_run
    assert table["chance"] == {"video": 0.25, "audio": 0.25, "video_audio": 0.25}
    assert missed_targets(table) == []


@pytest.mark.slow
def test_learning_table_curves_and_probes_are_written(demo_run):
    from hs_rl.data.probes import probe_series
    from hs_rl.tools.demo import format_learning_table

    root, table = demo_run
    assert set(table["accuracy"]) == {"base", "stage1_video", "stage2_audio", "stage3_video_audio"}
    assert set(table["accuracy"]["stage1_video"]) == {"video", "audio", "video_audio", "format"}
    assert set(table["right_letter_probability"]) == set(table["accuracy"])
    printed = format_learning_table(table).splitlines()
    base = next(line for line in printed if line.startswith("base (after format warm-up)"))  # the first block
    assert base.split()[4:10] == [word for k in ("video", "audio", "video_audio")
                                  for word in ("chance", f"{table['right_letter_probability']['base'][k]:.2f}")]
    assert printed[-1] == "targets: every one met"
    for name, probes in (("stage1_video", {"video"}), ("stage2_audio", {"video", "audio"}),
                         ("stage3_video_audio", {"video", "audio", "video_audio"})):
        history = json.loads((root / name / "log_history.json").read_text())
        logged = [h for h in history if "reward" in h]
        last = [h["rewards/format_reward/mean"] for h in logged[-10:]]
        # well-formed samples to the end of every stage; stage 3 samples at temperature 1.5 to find the letters it
        # must learn (stages/demo/stage3_video_audio.yaml), and about 1 sample in 20 comes out malformed there (the
        # held-out answers' format, judged by the targets above, is greedy)
        floor = 0.9 if name == "stage3_video_audio" else 0.95
        assert sum(last) / len(last) >= floor, (name, last)
        series = probe_series(history)  # measured from the start and every 50 steps, each earlier family too
        assert set(series) == probes and all(points[0][0] == 0 and len(points) >= 3 for points in series.values())
        picture = root / name / "report" / "curves.png"
        assert picture.is_file() and picture.read_bytes()[:4] == b"\x89PNG"
    assert (root / "report" / "tasks.png").stat().st_size > 0
    progress = json.loads((root / "stage3_video_audio" / "progress.json").read_text())
    assert [d["records"] for d in progress["replay"]] == [32, 32]  # half of stage 3's 64, from each earlier stage


@pytest.mark.slow
def test_without_media_in_the_loss_it_stays_at_chance(demo_run, monkeypatch, tmp_path):
    """Stage 1 again from the same base, with TRL's own loss forward (the media never reach the gradient)."""
    from trl import GRPOTrainer

    from hs_rl.commands import build_parser
    from hs_rl.grpo.trainer import OmniGRPOTrainer
    from hs_rl.omni.families import language_backbone
    from hs_rl.omni.inputs import thinker_of
    from hs_rl.tools.curriculum import heldout_accuracy, right_letter_probability
    from hs_rl.train import build_trainer

    root, table = demo_run

    def trls_forward(self, model, *args, **kwargs):  # TRL's own, with its fused head given a head-less backbone
        with language_backbone(thinker_of(model)):  # (a no-op on transformers 5.23; 5.20's thinker needs it)
            return GRPOTrainer._get_per_token_logps_and_entropies(self, model, *args, **kwargs)

    monkeypatch.setattr(OmniGRPOTrainer, "_get_per_token_logps_and_entropies", trls_forward)
    data_args, config, model_args = build_parser("train").parse_args_and_config([
        "--config", str(STAGE1), "--model_name_or_path", str(root / "base" / "final"),
        "--ref_model_name_or_path", str(root / "base" / "final"),
        "--dataset", str(root / "data" / "stage1_video.jsonl"), "--output_dir", str(tmp_path / "run"),
        "--save_strategy", "no", "--report_to", "none", "--resume_from_checkpoint", "none",
        "--probe_datasets", "", "--eval_strategy", "no", "--eval_on_start", "false"])  # no probes: trained alone
    trainer = build_trainer(data_args, config, model_args)
    trainer.train()
    thinker, processor, data = thinker_of(trainer.model), trainer.processing_class, root / "data" / "curriculum"
    sampled = right_letter_probability(thinker, processor, data_args, data, "video")
    greedy = heldout_accuracy(thinker, processor, data_args, data, "video")
    assert abs(sampled - 0.25) <= 0.1, sampled  # undecided: its greedy pick is luck, reported only
    assert table["right_letter_probability"]["stage1_video"]["video"] - sampled >= 0.5, (sampled, greedy)
    assert table["accuracy"]["stage1_video"]["video"] - greedy >= 0.25, greedy
