"""`hs-rl eval`: results the scorer reads, kill-safe resume, mixed-modality batches equal to single prompts,
and bad media that leave an error line instead of stopping the run (tiny model, CPU)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hs_rl.cli import main
from hs_rl.eval.evaluate import (
    EvalArguments,
    benchmark_fps,
    data_arguments,
    evaluate,
    generation_config,
    load_questions,
    prepare,
    read_done,
)
from hs_rl.eval.scoring import ScoreArguments, load_results, run_score, score_items
from hs_rl.omni.generation import prefill_rows

FIELDS = {"id", "task_type", "question_type", "modality", "question", "options", "answer", "prediction",
          "extracted", "model", "think", "source", "index"}


def eval_args(tiny_model, sample_data, out: Path, **overrides) -> EvalArguments:
    """Arguments over both benchmark files with short generations."""
    kwargs = dict(model=str(tiny_model["full"]), data=[str(sample_data["vqa_json"]), str(sample_data["aqa_json"])],
                  out=str(out), media_root=str(sample_data["media_root"]), max_new_tokens=6, batch_size=4,
                  num_workers=2)
    kwargs.update(overrides)
    return EvalArguments(**kwargs)


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def mixed_benchmark(sample_data, path: Path, extra: list[dict] | None = None) -> Path:
    """A benchmark file whose questions mix video, video+audio and audio-only prompts."""
    vqa = json.loads(Path(sample_data["vqa_json"]).read_text())
    aqa = json.loads(Path(sample_data["aqa_json"]).read_text())
    entries = []
    for entry in [*vqa[:5], *aqa[:2]]:
        entries.append({"video_path": entry["video_path"], "questions": entry["questions"][:2]})
    path.write_text(json.dumps(entries + (extra or [])))
    return path


def test_benchmark_fps_rule_and_eval_defaults():
    """The release's frame rule and frame/pixel caps are the defaults."""
    assert [benchmark_fps(n) for n in (10, 300, 301, 599, 600, 5000)] == [1.0, 1.0, 0.5, 0.5, 0.2, 0.2]
    args = EvalArguments(model="m", data=["d.json"], out="o.jsonl")
    sampling = data_arguments(args).video_sampling()
    assert (sampling.max_frames, sampling.max_pixels) == (24, 360 * 420)
    assert args.do_sample is False and args.max_new_tokens == 1024 and args.think is True


def test_cli_run_writes_scorable_lines(tiny_model, sample_data, tmp_path, capsys):
    """vqa+aqa with --limit: one line per question, every field, read by the scorer and `hs-rl score`."""
    out = tmp_path / "results.jsonl"
    code = main(["eval", "--model", str(tiny_model["full"]), "--data", str(sample_data["vqa_json"]),
                 str(sample_data["aqa_json"]), "--out", str(out), "--media_root", str(sample_data["media_root"]),
                 "--limit", "28", "--max_new_tokens", "4", "--label", "tiny"])
    assert code == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "hs-rl score" in printed
    rows = read_lines(out)
    assert len(rows) == 28 and len({r["id"] for r in rows}) == 28
    for row in rows:
        assert FIELDS <= row.keys()
        assert row["model"] == "tiny" and row["think"] is True and "error" not in row
    assert {r["modality"] for r in rows} == {"video", "video_audio", "audio"}
    assert {Path(r["source"]).name for r in rows} == {"HumanSense_VQA.json", "HumanSense_AQA.json"}
    items, _ = load_results(out)
    assert len(items) == 28 and score_items(items)["all"]["total"] == 28
    report = tmp_path / "report"
    assert run_score(ScoreArguments(results=[str(out)], out=str(report))) == 0
    assert (report / "scores.json").is_file()


def test_resume_appends_only_missing_and_repairs_a_torn_line(tiny_model, sample_data, tmp_path):
    """limit=k then a full run: nothing lost or doubled, first k lines untouched; a half line is re-answered."""
    out = tmp_path / "results.jsonl"
    evaluate(eval_args(tiny_model, sample_data, out, limit=5))
    first = out.read_bytes()
    assert len(first.splitlines()) == 5

    evaluate(eval_args(tiny_model, sample_data, out))
    full = out.read_bytes()
    assert full.startswith(first)
    ids = [r["id"] for r in read_lines(out)]
    expected = [q.record.id for q in load_questions(eval_args(tiny_model, sample_data, out))]
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(expected)

    # Killed mid-write: the last line is half there and has no newline.
    lines = full.splitlines(keepends=True)
    torn = b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2]
    out.write_bytes(torn)
    assert str(json.loads(lines[-1])["id"]) not in read_done(out)
    assert out.read_bytes() == b"".join(lines[:-1])  # truncated back to the last complete line

    out.write_bytes(torn)
    evaluate(eval_args(tiny_model, sample_data, out))
    assert out.read_bytes() == full  # re-answered (greedy: the same line) and the file is valid JSONL again

    evaluate(eval_args(tiny_model, sample_data, out))  # nothing left: a no-op
    assert out.read_bytes() == full


def test_resume_refuses_another_model(tiny_model, sample_data, tmp_path):
    """Answers of two models never end up in one file."""
    out = tmp_path / "results.jsonl"
    evaluate(eval_args(tiny_model, sample_data, out, limit=1, label="a"))
    with pytest.raises(ValueError, match="already holds answers"):
        evaluate(eval_args(tiny_model, sample_data, out, limit=2, label="b"))


def test_batched_equals_unbatched(omni_model, sample_data, tmp_path):
    """Greedy answers with batch_size=4 equal batch_size=1 on a batch mixing all three modalities (both families:
    Qwen3-Omni's fractional rope deltas and DeepStack go through the same batched prefill)."""
    tiny_model = omni_model
    data = mixed_benchmark(sample_data, tmp_path / "mixed.json")
    runs = {}
    for size in (1, 4):
        out = tmp_path / f"b{size}.jsonl"
        evaluate(eval_args(tiny_model, sample_data, out, data=[str(data)], batch_size=size, max_new_tokens=8))
        runs[size] = read_lines(out)
    assert {r["modality"] for r in runs[1]} == {"video", "video_audio", "audio"}
    assert [r["id"] for r in runs[1]] == [r["id"] for r in runs[4]]
    assert [r["prediction"] for r in runs[1]] == [r["prediction"] for r in runs[4]]


def test_left_padded_logits_match_single_prompts(tiny_model, sample_data, tmp_path):
    """Logits of every decode step agree to float noise, which a wrong rope_deltas (e.g. +padding) breaks."""
    from transformers import GenerationConfig

    from hs_rl.omni.loading import load_processor, load_thinker

    args = eval_args(tiny_model, sample_data, tmp_path / "x.jsonl", data=[str(mixed_benchmark(
        sample_data, tmp_path / "mixed.json"))])
    questions = load_questions(args)
    picked = {}
    for q in questions:
        picked.setdefault(q.record.modality, q)
    thinker = load_thinker(args.model, torch.float32).eval()
    processor = load_processor(args.model)
    base = data_arguments(args)
    rows = [prepare(q.record, processor, base, None) for q in picked.values()]
    assert len({r.input_ids.numel() for r in rows}) == len(rows)  # different widths: real left padding
    pad = generation_config(thinker, processor, args).pad_token_id
    config = GenerationConfig(max_new_tokens=4, do_sample=False, eos_token_id=[], pad_token_id=pad,
                              temperature=None, top_p=None, top_k=None, output_logits=True,
                              return_dict_in_generate=True)

    def step_logits(batch):
        ids, mask, cache = prefill_rows(thinker, batch, pad)
        result = thinker.generate(input_ids=ids, attention_mask=mask, past_key_values=cache, generation_config=config)
        return torch.stack(result.logits, 1), result.sequences[:, ids.shape[1]:]

    batched, batched_tokens = step_logits(rows)
    for b, row in enumerate(rows):
        single, single_tokens = step_logits([row])
        assert torch.equal(batched_tokens[b], single_tokens[0])
        assert torch.allclose(batched[b], single[0], atol=1e-5), (b, (batched[b] - single[0]).abs().max())


def test_bad_media_gives_an_error_line_and_the_run_continues(tiny_model, sample_data, tmp_path):
    """A corrupt video and a missing wav each get an error line naming the file; the others are answered."""
    bad_video = tmp_path / "broken.mp4"
    bad_video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    extra = [
        {"video_path": str(bad_video), "questions": [{"task_type": "Action_Recognition",
         "question_pattern": "Multiple-choice question (select one answer choice)", "question": "What happens?",
         "options": ["A. waving", "B. running"], "answer": "A"}]},
        {"video_path": str(tmp_path / "missing.wav"), "questions": [{"task_type": "Fraud_Recognition",
         "question_pattern": "Judgment question (Yes or No)", "question": "Fraud?", "options": [], "answer": "Yes"}]},
    ]
    data = mixed_benchmark(sample_data, tmp_path / "with_bad.json", extra)
    out = tmp_path / "results.jsonl"
    evaluate(eval_args(tiny_model, sample_data, out, data=[str(data)]))
    rows = read_lines(out)
    errors = [r for r in rows if "error" in r]
    assert len(errors) == 2 and len(rows) == len(load_questions(eval_args(
        tiny_model, sample_data, out, data=[str(data)])))
    assert "broken.mp4" in errors[0]["error"] and "missing.wav" in errors[1]["error"]
    assert all(r["prediction"] == "" and r["extracted"] == "" for r in errors)
    assert all(r["prediction"] for r in rows if "error" not in r)
    items = {it.id: it for it in load_results(out)[0]}
    assert all(items[r["id"]].score == 0 for r in errors)


def test_a_stage_final_model_is_labelled_by_its_stage(tmp_path):
    """`--model run/stage1_video/final` without --label stores `stage1_video`, not `final` for every stage."""
    from types import SimpleNamespace

    from hs_rl.eval.evaluate import _model_label

    assert _model_label(SimpleNamespace(label=None, model=str(tmp_path / "stage1_video" / "final"))) == "stage1_video"
    assert _model_label(SimpleNamespace(label=None, model=str(tmp_path / "run" / "checkpoint-4"))) == "run-checkpoint-4"
    assert _model_label(SimpleNamespace(label="mine", model=str(tmp_path / "x" / "final"))) == "mine"


def test_the_locked_processor_answers_the_audio_in_video_question_as_what_it_wraps(tiny_model):
    """Evaluation's thread lock wraps the processor; the question which audio-in-video keywords it declares must be
    answered for the wrapped processor (the wrapper's own class declares none), on either transformers layout."""
    from hs_rl.data.prompt_media import takes_audio_from_video
    from hs_rl.eval.evaluate import LockedProcessor
    from hs_rl.omni.loading import load_processor

    processor = load_processor(tiny_model["full"])
    import transformers
    from packaging.version import Version

    assert takes_audio_from_video(processor) is (Version(transformers.__version__) >= Version("5.23"))
    assert takes_audio_from_video(LockedProcessor(processor)) is takes_audio_from_video(processor)
