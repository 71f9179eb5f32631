"""`--prompt_source`: the benchmark's own prompts read from its code, `--dump_prompts`, and their rules.

The fixture under tests/fixtures/benchmark_src is a stand-in for the benchmark's HumanSense_bench/src (same
files, names and control flow, our placeholder wording); its Benchmark.py runs, so every dumped prompt is
compared with what that loop itself builds. Set HS_RL_BENCHMARK_SRC to a real checkout's HumanSense_bench/src
to run the same comparison against the released code.
"""
from __future__ import annotations

import importlib
import itertools
import json
import os
import shutil
import sys
import types
from pathlib import Path

import pytest

from hs_rl.cli import main
from hs_rl.data.benchmark_prompts import PromptSourceError, load_prompt_source
from hs_rl.data.prompts import DEFAULT_SYSTEM_PROMPT, question_text
from hs_rl.eval.evaluate import EvalArguments, dump_prompts, load_questions

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SRC = FIXTURES / "benchmark_src"
VQA = FIXTURES / "benchmark_data" / "HumanSense_VQA.json"
AQA = FIXTURES / "benchmark_data" / "HumanSense_AQA.json"
REAL_SRC = os.environ.get("HS_RL_BENCHMARK_SRC")

SINGLE = "Multiple-choice question (select one answer choice)"
MULTI = "Multiple-choice question (select one or more answer choices)"
NUMBER = "Question and answer (Arabic numerals)"
YES_NO = "Judgment question (Yes or No)"
# The fixture's lists (tests/fixtures/benchmark_src/benchmark/Benchmark.py).
ASR_ONLY = {"Rapport_Recognition", "Emo_Strategy", "Talkingperson_Recognition", "Familiarity_Recognition",
            "Relation_Recognition"}
VOICE = ASR_ONLY | {"Fraud_Recognition", "Psychological_Chat"}
SYSTEM = "[stand-in system turn] You watch and listen."
GUIDE = "[stand-in analysis guide]\n    notice people, speech and events first."
FLAGS = ("think", "audio", "asr", "analysis_prompt")


def questions_of(path: Path) -> list[dict]:
    return [entry["questions"] for entry in json.loads(path.read_text())]


def dump(tmp_path: Path, src: Path = SRC, **flags) -> list[dict]:
    out = tmp_path / "prompts.jsonl"
    dump_prompts(EvalArguments(data=[str(VQA), str(AQA)], prompt_source=str(src), dump_prompts=str(out), **flags))
    return [json.loads(line) for line in out.read_text().splitlines()]


# ------------------------------------------------------------------ the benchmark's own loop, recorded

def run_benchmark_loop(src: Path, data_file: Path, tmp_path: Path, audio_eval: bool, **flags) -> dict[int, dict]:
    """Run the checkout's Benchmark.py loop over a data file with a recording model: index -> what it was given."""
    data = json.loads(data_file.read_text())
    calls: list[dict] = []

    class Recorder:
        def name(self):
            return "recorder"

        def Run(self, info):  # noqa: N802 (the benchmark's method name)
            calls.append(info)
            return str(len(calls) - 1)

    args = types.SimpleNamespace(output_file=str(tmp_path / "bench_out.json"), tmp_video_dir=str(tmp_path),
                                 resume=False, audio_eval=audio_eval, think=flags.get("think", False),
                                 audio=flags.get("audio", False), asr=flags.get("asr", False),
                                 think_omini=flags.get("analysis_prompt", False))

    def forget():
        for name in list(sys.modules):
            if name.split(".")[0] in ("benchmark", "utils", "model"):
                del sys.modules[name]

    saved = sys.path[:]
    sys.path.insert(0, str(src))
    forget()
    try:
        importlib.import_module("benchmark.Benchmark").HSPIBenchEval(data, Recorder(), args)
    finally:
        sys.path[:] = saved
        forget()
    return {i: calls[int(entry["questions"]["recorder"])] for i, entry in enumerate(data)
            if "recorder" in entry["questions"]}


def assert_dump_matches_loop(src: Path, tmp_path: Path, **flags) -> list[dict]:
    """Every dumped user text and audio flag equals what the benchmark loop built for that question; the
    loop asked nothing else except questions it has no template for (it would reuse the last text)."""
    lines = dump(tmp_path, src, **flags)
    for data_file, audio_eval in ((VQA, False), (AQA, True)):
        ours = {line["index"]: line for line in lines if line["file"] == data_file.name}
        theirs = run_benchmark_loop(src, data_file, tmp_path, audio_eval, **flags)
        assert set(ours) <= set(theirs)
        questions = questions_of(data_file)
        for index in set(theirs) - set(ours):
            q = questions[index]
            assert q["question_pattern"] == YES_NO or len(q["options"]) > 5, (index, q)
        for index, line in ours.items():
            assert line["user"] == theirs[index]["inp"], index
            if not audio_eval:
                assert line["use_audio_in_video"] == theirs[index]["if_audio"], index
    return lines


def combos():
    return [dict(zip(FLAGS, values)) for values in itertools.product((False, True), repeat=len(FLAGS))]


@pytest.mark.parametrize("flags", combos(), ids=lambda f: "-".join(k for k, v in f.items() if v) or "plain")
def test_dump_equals_the_benchmark_loop_and_follows_the_rules(flags, tmp_path):
    """16 flag combinations over a fixture with every pattern and option count (2-5 single, multi, number,
    yes/no, a 6-option single): structure, tasks asked, ASR placement, audio routing, order."""
    lines = assert_dump_matches_loop(SRC, tmp_path, **flags)
    source = load_prompt_source(SRC)
    data = {VQA.name: questions_of(VQA), AQA.name: questions_of(AQA)}
    keys = [(line["file"], line["index"]) for line in lines]  # data-file order, checked below
    expected = [(name, i) for name, qs in data.items() for i, q in enumerate(qs)
                if (not flags["asr"] or q["task_type"] in ASR_ONLY)  # --asr asks only these tasks
                and (not flags["analysis_prompt"] or q["task_type"] in VOICE)
                and q["question_pattern"] != YES_NO and len(q["options"]) <= 5]  # no template: not asked
    assert keys == expected
    for line in lines:
        assert set(line) == {"file", "index", "system", "user", "video", "audio", "use_audio_in_video"}
        q = data[line["file"]][line["index"]]
        assert q["question_pattern"] != YES_NO and len(q["options"]) <= 5
        assert line["system"] == SYSTEM
        user = line["user"]
        ending = "</answer>.\n" if flags["think"] else "and nothing else:\n"
        assert user.endswith(ending)
        body = "\n".join([f"Q: {q['question']}" + ("" if q["question_pattern"] == NUMBER else
                                                    " (pick all that apply)" if q["question_pattern"] == MULTI
                                                    else " (pick one)"), *q["options"]])
        assert body in user  # question then its options, one per line, verbatim ("A.close" keeps no space)
        template_start = user.index("[stand-in header]")
        prefix = user[:template_start]
        wanted = (GUIDE if flags["analysis_prompt"] else "") + \
            (f"[stand-in transcript] {q['asr_en']}" if flags["asr"] and q["task_type"] in VOICE else "")
        assert prefix == wanted + "\n"  # analysis text, then ASR text, then the template (its leading newline)
        if line["file"] == AQA.name:
            assert line["video"] is None and line["audio"].endswith(".wav") and not line["use_audio_in_video"]
        else:
            assert line["audio"] is None and line["video"].endswith(".mp4")
            assert line["use_audio_in_video"] == (flags["audio"] and q["task_type"] in VOICE)
    assert len(source.version) == 12


@pytest.mark.skipif(not REAL_SRC, reason="set HS_RL_BENCHMARK_SRC to a checkout's HumanSense_bench/src")
@pytest.mark.parametrize("flags", combos(), ids=lambda f: "-".join(k for k, v in f.items() if v) or "plain")
def test_dump_equals_the_released_benchmark_loop(flags, tmp_path, monkeypatch):
    """The same comparison against the released code, and its system turn taken verbatim from its model file."""
    monkeypatch.chdir(tmp_path)
    lines = assert_dump_matches_loop(Path(REAL_SRC), tmp_path, **flags)
    model_file = (Path(REAL_SRC) / "model" / "Qwen25omini.py").read_text()
    assert lines and all(f'"{line["system"]}"' in model_file for line in lines)


def test_cli_dump_without_a_model_and_our_prompts_by_default(tmp_path, capsys):
    """`hs-rl eval --dump_prompts` needs no --model; without --prompt_source the text is ours, every question
    is asked, and --no_audio turns the video's audio off."""
    out = tmp_path / "ours.jsonl"
    assert main(["eval", "--data", str(VQA), str(AQA), "--dump_prompts", str(out), "--no_audio"]) == 0
    assert "no model loaded" in capsys.readouterr().out
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == len(questions_of(VQA)) + len(questions_of(AQA))
    questions = load_questions(EvalArguments(data=[str(VQA), str(AQA)]))
    assert [line["user"] for line in lines] == [question_text(q.record, think=True) for q in questions]
    assert all(line["system"] == DEFAULT_SYSTEM_PROMPT and not line["use_audio_in_video"] for line in lines)
    with_audio = tmp_path / "audio.jsonl"
    assert main(["eval", "--data", str(VQA), "--dump_prompts", str(with_audio)]) == 0
    routed = {json.loads(line)["index"] for line in with_audio.read_text().splitlines()
              if json.loads(line)["use_audio_in_video"]}
    assert routed == {i for i, q in enumerate(questions_of(VQA)) if q["task_type"] in VOICE}


def test_paper_setting_via_cli(tmp_path):
    """The paper's Table 1 setting: benchmark text, no think, audio on (the issue's command)."""
    out = tmp_path / "p.jsonl"
    assert main(["eval", "--prompt_source", str(SRC), "--no_think", "--data", str(VQA), str(AQA),
                 "--dump_prompts", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines == dump(tmp_path / "api", think=False, audio=True)
    assert all("<think>" not in line["user"] for line in lines)


# ------------------------------------------------------------------ errors that name what is needed

def broken_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "src"
    shutil.copytree(SRC, copy)
    return copy


@pytest.mark.parametrize("breakage,message", [
    ("no_folder", "no such folder"),
    ("no_benchmark", "needs benchmark/Benchmark.py"),
    ("no_template_file", "needs benchmark/PROMPT_TEMPLATE_think.py"),
    ("syntax", "PROMPT_TEMPLATE.py:2: not valid Python"),
    ("missing_constant", "no string constant T_ONE5"),
    ("no_system", "Qwen25omini.py: expected one system text"),
    ("no_asr_block", "`if args.asr:` listing the tasks"),
    ("parent_folder", "did you mean"),
])
def test_missing_or_malformed_source_is_a_clear_error(breakage, message, tmp_path, capsys):
    src = broken_copy(tmp_path)
    bench = src / "benchmark" / "Benchmark.py"
    if breakage == "no_folder":
        src = tmp_path / "absent"
    elif breakage == "no_benchmark":
        bench.unlink()
    elif breakage == "no_template_file":
        (src / "benchmark" / "PROMPT_TEMPLATE_think.py").unlink()
    elif breakage == "syntax":
        (src / "benchmark" / "PROMPT_TEMPLATE.py").write_text("T_COUNT = 1\nT_ONE2 = (\n")
    elif breakage == "missing_constant":
        path = src / "benchmark" / "PROMPT_TEMPLATE.py"
        path.write_text(path.read_text().replace("T_ONE5 =", "T_FIVE ="))
    elif breakage == "no_system":
        (src / "model" / "Qwen25omini.py").write_text("def conversation():\n    return []\n")
    elif breakage == "no_asr_block":
        bench.write_text(bench.read_text().replace("args.asr", "args.transcript"))
    elif breakage == "parent_folder":
        nested = tmp_path / "checkout" / "HumanSense_bench"
        nested.mkdir(parents=True)
        shutil.move(str(src), str(nested / "src"))
        src = tmp_path / "checkout"
    with pytest.raises(PromptSourceError, match="needs|not valid|no such|no string|expected one|cannot find"):
        load_prompt_source(src)
    code = main(["eval", "--data", str(VQA), "--prompt_source", str(src), "--dump_prompts",
                 str(tmp_path / "p.jsonl")])
    printed = capsys.readouterr().out
    assert code == 1 and message in printed and not (tmp_path / "p.jsonl").exists()


def test_benchmark_flags_need_a_prompt_source_and_own_the_system_turn(tmp_path):
    with pytest.raises(ValueError, match="--asr need --prompt_source"):
        load_questions(EvalArguments(data=[str(VQA)], asr=True))
    with pytest.raises(ValueError, match="both set the system turn"):
        load_questions(EvalArguments(data=[str(VQA)], prompt_source=str(SRC), system_prompt="Be brief."))


def test_asr_text_missing_names_the_question(tmp_path):
    data = json.loads(VQA.read_text())
    del data[2]["questions"]["asr_en"]
    path = tmp_path / "HumanSense_VQA.json"
    path.write_text(json.dumps(data))
    with pytest.raises(PromptSourceError, match=r"HumanSense_VQA.json: question 2: .*'asr_en'"):
        load_questions(EvalArguments(data=[str(path)], prompt_source=str(SRC), asr=True))


def test_an_edited_checkout_is_reread_with_a_new_version(tmp_path):
    src = broken_copy(tmp_path)
    before = load_prompt_source(src)
    path = src / "benchmark" / "PROMPT_TEMPLATE.py"
    path.write_text(path.read_text().replace("[stand-in header]", "[edited header]"))
    os.utime(path, ns=(before_ns := path.stat().st_mtime_ns + 10**9, before_ns))
    after = load_prompt_source(src)
    assert after.version != before.version
    assert "[edited header]" in after.templates[False]["T_ONE2"]


# ------------------------------------------------------------------ the text really reaches the model

def test_eval_asks_with_the_benchmark_text_and_records_the_setting(tiny_model, sample_data, tmp_path):
    """A real (tiny) eval run in the paper setting: the processor's prompt holds the benchmark's system and user
    text, every line records the setting, a resume in another setting is refused, and the scorer sets the
    paper column beside it."""
    import dataclasses

    from hs_rl.eval.evaluate import data_arguments, evaluate, prepare
    from hs_rl.eval.scoring import ScoreArguments, score_files
    from hs_rl.omni.loading import load_processor

    out = tmp_path / "paper.jsonl"
    args = EvalArguments(model=str(tiny_model["full"]), data=[str(sample_data["vqa_json"])], out=str(out),
                         media_root=str(sample_data["media_root"]), prompt_source=str(SRC), think=False, limit=3,
                         max_new_tokens=2, batch_size=3, num_workers=1)
    questions = load_questions(args)
    processor = load_processor(tiny_model["full"])
    media = prepare(questions[0].record, processor, data_arguments(args), None, questions[0].messages())
    text = processor.tokenizer.decode(media.input_ids)
    assert SYSTEM in text and questions[0].user in text and DEFAULT_SYSTEM_PROMPT not in text

    evaluate(args)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [q.record.id for q in questions]
    version = load_prompt_source(SRC).version
    for r in rows:
        s = r["setting"]
        assert (s["prompts"], s["prompt_version"], s["think"], s["audio"], s["asr"]) == \
            ("benchmark", version, False, True, False)
        assert s["decoding"] == {"do_sample": False, "temperature": None, "max_new_tokens": 2}
        assert s["frames"] == {"fps": "benchmark rule", "max_frames": 24, "max_pixels": 360 * 420}
    with pytest.raises(ValueError, match="another setting .*audio"):
        evaluate(dataclasses.replace(args, audio=False, limit=4))
    scores = score_files(ScoreArguments(results=[str(out)], out=str(tmp_path / "report")))
    assert scores["paper_mismatch"] == []
    assert "Paper (Qwen2.5-Omni-7B)" in (tmp_path / "report" / "report.md").read_text()


def test_training_prompts_from_the_same_source(tmp_path):
    """Stage option `prompt_source`: training records are asked with the benchmark's text (its think templates
    when think: true); a record the benchmark has no template for is refused before training, by id; a bad
    folder fails when the options are parsed."""
    from hs_rl.commands import build_parser, check_config_keys
    from hs_rl.data.arguments import DataArguments
    from hs_rl.data.prompts import build_messages, check_prompt_source
    from hs_rl.data.records import Record

    record = Record(id="r1", task_type="Emo_Strategy", modality="video_audio", question="How does she feel",
                    question_type="single_choice", answer="B", options=["A. happy", "B. sad", "C. calm"],
                    video="/m/v.mp4")
    messages = build_messages(record, think=True, prompt_source=str(SRC))
    assert messages[0]["content"][0]["text"] == SYSTEM
    user = messages[1]["content"][-1]["text"]
    assert user == load_prompt_source(SRC).templates[True]["T_ONE3"].format(record.question, *record.options)
    assert messages[1]["content"][0] == {"type": "video", "video": "/m/v.mp4"}
    yes_no = dataclasses_replace(record, id="yn1", question_type="yes_no", options=[], answer="yes")
    with pytest.raises(ValueError, match=r"(?s)1 record.*yn1.*no template"):
        check_prompt_source([record, yes_no], str(SRC))
    with pytest.raises(PromptSourceError, match="needs benchmark/Benchmark.py"):
        DataArguments(prompt_source=str(tmp_path))
    stage = tmp_path / "stage.yaml"
    stage.write_text(f"dataset: d.jsonl\nprompt_source: {SRC}\nuse_cpu: true\nbf16: false\n")
    parser = build_parser("train")
    check_config_keys(parser, str(stage))  # a stage YAML may name it
    data_args = parser.parse_args_and_config(["--config", str(stage), "--output_dir", str(tmp_path / "o")])[0]
    assert data_args.prompt_source == str(SRC)


def dataclasses_replace(record, **changes):
    import dataclasses

    return dataclasses.replace(record, **changes)
