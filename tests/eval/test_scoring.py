"""`hs-rl score`: known accuracies, the upstream file format, side-by-side reports, and the released semantics."""
from __future__ import annotations

import json
from collections import defaultdict

import pytest

from hs_rl.cli import main
from hs_rl.data.answers import PATTERN_TO_TYPE
from hs_rl.eval.scoring import ScoreArguments, load_results, score_files

OPTS = ["A. happy", "B. sad", "C. angry", "D. calm"]
TYPE_TO_PATTERN = {v: k for k, v in PATTERN_TO_TYPE.items()}


def row(i, task, qtype, key, pred, options=None):
    """One of our results rows."""
    opts = OPTS if options is None and "choice" in qtype else (options or [])
    return {"id": str(i), "task_type": task, "question_type": qtype, "options": opts, "answer": key,
            "prediction": pred}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# Emo_Strategy (L4): 4 questions, 3 right -> 0.75. Human_Counting (L2): "10" right, "3 people" right,
# empty wrong -> 2/3. Relation_Recognition (L3) multi: exact 1 + subset 0.5 + wrong 0 -> 1.5/3 = 0.5.
# Mystery_Task: unassigned, 1/1.
ROWS = [
    row(1, "Emo_Strategy", "single_choice", "B", "<think>t</think><answer>B</answer>"),
    row(2, "Emo_Strategy", "single_choice", "B", "B. sad"),
    row(3, "Emo_Strategy", "single_choice", "A", "A"),
    row(4, "Emo_Strategy", "single_choice", "A", "ABCD"),
    row(5, "Human_Counting", "number", "10", "10"),
    row(6, "Human_Counting", "number", "3", "3 people"),
    row(7, "Human_Counting", "number", "3", ""),
    row(8, "Relation_Recognition", "multi_choice", "AC", "A and C"),
    row(9, "Relation_Recognition", "multi_choice", "AC", "C"),
    row(10, "Relation_Recognition", "multi_choice", "AC", "B"),
    row(11, "Mystery_Task", "yes_no", "Yes", " Yes. "),
]


def test_known_accuracies(tmp_path):
    path = write_jsonl(tmp_path / "results.jsonl", ROWS)
    scores = score_files(ScoreArguments(results=[str(path)], out=str(tmp_path / "report")))
    tasks = scores["tasks"]
    assert tasks["Emo_Strategy"]["correct"] == 3 and tasks["Emo_Strategy"]["accuracy"] == 0.75
    assert tasks["Human_Counting"]["accuracy"] == pytest.approx(2 / 3)
    assert tasks["Human_Counting"]["empty"] == 1 and tasks["Human_Counting"]["total"] == 3
    assert tasks["Relation_Recognition"]["correct"] == 1.5
    assert tasks["Relation_Recognition"]["accuracy"] == pytest.approx(0.5)
    assert (tasks["Relation_Recognition"]["tier"], tasks["Relation_Recognition"]["abbrev"]) == ("L3", "RR1")
    assert tasks["Mystery_Task"]["tier"] == "unassigned"
    assert scores["unassigned_task_types"] == ["Mystery_Task"]
    assert scores["tiers"]["L2"]["accuracy"] == pytest.approx(2 / 3)
    assert set(scores["tiers"]) == {"L2", "L3", "L4", "unassigned"}
    assert scores["question_types"]["multi_choice"]["correct"] == 1.5
    assert scores["all"]["correct"] == pytest.approx(3 + 2 + 1.5 + 1)
    assert scores["all"]["accuracy"] == pytest.approx(7.5 / 11)
    # Paper Avg.: unweighted mean over the present video tasks ES, HC, RR1.
    assert scores["paper_avg"] == pytest.approx((0.75 + 2 / 3 + 0.5) / 3)
    assert scores["paper_avg_tasks"] == ["HC", "RR1", "ES"]
    on_disk = json.loads((tmp_path / "report" / "scores.json").read_text())
    assert on_disk["tasks"]["Emo_Strategy"]["accuracy"] == 0.75
    assert "counts as WRONG" in (tmp_path / "report" / "report.md").read_text()


def upstream_file(path, key="Qwen2.5-Omni", as_list=False):
    """A benchmark JSON with answers under `key` (one question dict per entry, or a list)."""
    entries = []
    for r in ROWS:
        q = {"task_type": r["task_type"], "question": "?", "question_pattern": TYPE_TO_PATTERN[r["question_type"]],
             "options": r["options"], "answer": r["answer"], "fps": 1, "full_frame_number": 10,
             key: r["prediction"]}
        entries.append({"video_path": f"v{r['id']}.mp4", "questions": [q] if as_list else q})
    path.write_text(json.dumps(entries))
    return path


@pytest.mark.parametrize("as_list", [False, True])
def test_upstream_format_matches_ours(tmp_path, as_list):
    ours = write_jsonl(tmp_path / "ours.jsonl", ROWS)
    theirs = upstream_file(tmp_path / "bench.json", as_list=as_list)
    a = score_files(ScoreArguments(results=[str(ours)], out=str(tmp_path / "a")))
    b = score_files(ScoreArguments(results=[str(theirs)], out=str(tmp_path / "b"), model=["Qwen2.5-Omni"]))
    c = score_files(ScoreArguments(results=[str(theirs)], out=str(tmp_path / "c")))  # key detected
    assert b["model_key"] == c["model_key"] == "Qwen2.5-Omni"
    for task, cell in a["tasks"].items():
        assert b["tasks"][task]["accuracy"] == cell["accuracy"] == c["tasks"][task]["accuracy"]


def test_upstream_ambiguous_key_is_an_error(tmp_path):
    path = upstream_file(tmp_path / "bench.json")
    data = json.loads(path.read_text())
    data[0]["questions"]["OtherModel"] = "A"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="--model"):
        load_results(path)


def setting(**changes):
    """A results line's setting; by default the paper's Table 1 one (benchmark prompts, no think, audio on)."""
    base = {"prompts": "benchmark", "prompt_source": "/b/src", "prompt_version": "0123456789ab", "think": False,
            "audio": True, "asr": False, "analysis_prompt": False,
            "decoding": {"do_sample": False, "temperature": None, "max_new_tokens": 1024},
            "frames": {"fps": "benchmark rule", "max_frames": 24, "max_pixels": 151200}}
    return {**base, **changes}


def test_side_by_side_via_cli(tmp_path, capsys):
    """Each column is labelled with its setting; the paper column stands beside the paper-setting column, and
    the other column is flagged as not comparable with it."""
    good = write_jsonl(tmp_path / "good.jsonl", [{**r, "setting": setting()} for r in ROWS])
    ours = setting(prompts="hs-rl", prompt_source=None, think=True)
    worse = write_jsonl(tmp_path / "worse.jsonl", [{**r, "prediction": "", "setting": ours} for r in ROWS])
    out = tmp_path / "report"
    assert main(["score", str(good), str(worse), "--out", str(out), "--labels", "trained", "base"]) == 0
    printed = capsys.readouterr().out
    assert "base: " in printed and "not comparable with the paper's Table 1: prompts='hs-rl'" in printed
    scores = json.loads((out / "scores.json").read_text())
    assert list(scores["models"]) == ["trained", "base"]
    assert scores["models"]["base"]["all"]["accuracy"] == 0.0
    assert scores["models"]["trained"]["paper_mismatch"] == [] and scores["models"]["base"]["paper_mismatch"]
    report = (out / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| Tier"))
    assert "trained" in header and "base" in header and "Paper" in header
    # each column's setting, said once above the table (it was a row repeating it in every column)
    assert "- trained: benchmark prompts 0123456789ab, no-think, audio on, greedy" in report
    assert "- base: hs-rl prompts 0123456789ab, think, audio on" in report
    assert "| L4 | ES | `Emo_Strategy` | 0.607 | 0.750 (3/4) | 0.000 (0/4) |" in report
    assert "- base: not the paper's setting (prompts='hs-rl' (paper: 'benchmark'); think=True" in report
    png = out / "tasks.png"
    assert png.exists() and png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("changes", [{"think": True}, {"audio": False}, {"asr": True}, {"prompts": "hs-rl"},
                                     {"decoding": {"do_sample": True}}, None])
def test_paper_column_only_beside_the_paper_setting(changes, tmp_path):
    """No column in the paper's setting (or no setting recorded): the paper column and ticks are left out,
    with a note saying which setting would match."""
    rows = ROWS if changes is None else [{**r, "setting": setting(**changes)} for r in ROWS]
    out = tmp_path / "report"
    scores = score_files(ScoreArguments(results=[str(write_jsonl(tmp_path / "r.jsonl", rows))], out=str(out)))
    assert scores["paper_mismatch"]
    report = (out / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| Tier"))
    assert "Paper (" not in header and "0.607" not in report
    assert "The paper's Qwen2.5-Omni-7B column is left out" in report
    assert "| L4 | ES | `Emo_Strategy` | 0.750 (3/4) |" in report


def test_upstream_file_setting_from_its_name(tmp_path):
    """The benchmark's own output file: eval.sh's suffixes say audio on / think; no suffix means neither."""
    from hs_rl.eval.scoring import paper_mismatch, result_setting

    entries = [{"video_path": "v.mp4", "questions": {"task_type": "Emo_Strategy", "question_pattern":
                TYPE_TO_PATTERN["single_choice"], "question": "q", "options": OPTS, "answer": "A", "M": "A"}}]
    for name, mismatch in (("HumanSense_VQA_M_audio.json", False), ("HumanSense_VQA_M_audio_think.json", True),
                           ("HumanSense_VQA_M.json", True)):
        path = tmp_path / name
        path.write_text(json.dumps(entries))
        assert bool(paper_mismatch(result_setting(path))) is mismatch, name


# -------------------------------------------------- the released HumanSense semantics, re-implemented here

def released_score(rows):
    """Per-task accuracy as the released scorer computes it: skip empties, compare first characters."""
    stats = defaultdict(lambda: [0.0, 0])
    for r in rows:
        pred, key, qtype = r["prediction"], r["answer"], r["question_type"]
        if not pred:
            continue
        stats[r["task_type"]][1] += 1
        if qtype == "single_choice":
            stats[r["task_type"]][0] += pred[0].lower() == key[0].lower()
        elif qtype == "number":
            try:
                stats[r["task_type"]][0] += int(pred[0]) == int(key)
            except ValueError:
                pass
        elif qtype == "yes_no":
            stats[r["task_type"]][0] += pred.replace(".", "").replace(" ", "").lower() == key.lower()
        else:
            letters = pred.replace(".", "").replace(",", "").lower()
            if all(c in key.lower() for c in letters):
                stats[r["task_type"]][0] += 1 if all(c in letters for c in key.lower()) else 0.5
    return {task: correct / total for task, (correct, total) in stats.items()}


CLEAN = [
    row(1, "Emo_Strategy", "single_choice", "B", "B"), row(2, "Emo_Strategy", "single_choice", "B", "C"),
    row(3, "Emo_Strategy", "single_choice", "A", "A"),
    row(4, "Human_Counting", "number", "3", "3"), row(5, "Human_Counting", "number", "4", "2"),
    row(6, "Familiarity_Recognition", "yes_no", "Yes", "Yes"),
    row(7, "Familiarity_Recognition", "yes_no", "No", "Yes"),
    row(8, "Familiarity_Recognition", "yes_no", "No", "No."),
]


def test_clean_answers_agree_with_released_semantics(tmp_path):
    path = write_jsonl(tmp_path / "clean.jsonl", CLEAN)
    ours = score_files(ScoreArguments(results=[str(path)], out=str(tmp_path / "r")))
    expected = released_score(CLEAN)
    assert {t: c["accuracy"] for t, c in ours["tasks"].items()} == pytest.approx(expected)


def test_tags_and_option_text_where_first_character_fails(tmp_path):
    # Key B. First-character reading: "<" wrong, "B. sad" right by luck, "Both..." right by accident,
    # "10" read as 1. Ours: right, right, wrong (not an answer), right.
    rows = [
        row(1, "Emo_Strategy", "single_choice", "B", "<answer>B. sad</answer>"),
        row(2, "Emo_Strategy", "single_choice", "B", "B. sad"),
        row(3, "Emo_Strategy", "single_choice", "B", "Both are sad"),
        row(4, "Human_Counting", "number", "10", "10"),
    ]
    path = write_jsonl(tmp_path / "tricky.jsonl", rows)
    ours = score_files(ScoreArguments(results=[str(path)], out=str(tmp_path / "r")))
    released = released_score(rows)
    assert ours["tasks"]["Emo_Strategy"]["correct"] == 2  # the tagged and the "B. sad" answers
    assert released["Emo_Strategy"] == pytest.approx(2 / 3)  # the tag missed, "Both" counted
    assert ours["tasks"]["Human_Counting"]["accuracy"] == 1.0 and released["Human_Counting"] == 0.0


def test_columns_are_named_by_the_model_the_results_hold_and_the_paper_avg_says_its_coverage(tmp_path, capsys):
    """Each pipeline stage's eval file used to be results.jsonl, so the columns read `results`, `results (2)`."""
    paths = []
    for stage in ("stage1_video", "stage2_audio"):
        (tmp_path / stage / "eval").mkdir(parents=True)
        paths.append(write_jsonl(tmp_path / stage / "eval" / "results.jsonl", [{**r, "model": stage} for r in ROWS]))
    assert main(["score", *map(str, paths), "--out", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    scores = json.loads((tmp_path / "report" / "scores.json").read_text())
    assert list(scores["models"]) == ["stage1_video", "stage2_audio"]
    covered = len(scores["models"]["stage1_video"]["paper_avg_tasks"])
    assert 0 < covered < 13
    assert f"paper avg {round(scores['models']['stage1_video']['paper_avg'], 4)} ({covered} of 13 tasks)" in out


# -------------------------------------------------- the report, read at a glance

def _report(tmp_path, columns):
    """Score `columns` (label -> rows) side by side; returns the scored models and report.md's text."""
    from hs_rl.eval.scoring import ScoreArguments as Args

    paths = [write_jsonl(tmp_path / f"column{n}.jsonl", rows) for n, rows in enumerate(columns.values())]
    scores = score_files(Args(results=[str(p) for p in paths], out=str(tmp_path / "report"), labels=list(columns)))
    return scores["models"], (tmp_path / "report" / "report.md").read_text()


def test_report_says_each_setting_and_each_note_once(tmp_path):
    """Three columns, two asked alike: each setting is written once with the columns it holds, each note once, and
    the task outside the benchmark is named so, never 'unassigned'."""
    from hs_rl.eval.scoring import describe_setting

    mine = setting(prompts="hs-rl", prompt_source=None, think=True)
    models, report = _report(tmp_path, {
        "paper_like": [{**r, "setting": setting()} for r in ROWS],
        "stage1": [{**r, "setting": mine} for r in ROWS],
        "stage2": [{**r, "prediction": "", "setting": mine} for r in ROWS]})
    for text in (describe_setting(setting()), describe_setting(mine)):
        assert report.count(text) == 1, text
    assert f"- stage1, stage2: {describe_setting(mine)}" in report
    assert report.count("Paper Avg. over 3 of 13 tasks") == 1
    assert report.count("not the paper's setting") == 1 and "- stage1, stage2: not the paper's setting" in report
    assert report.count("Mystery_Task") == 2  # its row, and the one note saying it is not in the benchmark
    assert "| not in the benchmark | Mystery_Task |" in report and "unassigned" not in report
    assert "- Empty answers, counted wrong: paper_like 1, stage1 1, stage2 11" in report
    assert report.count("counts as WRONG") == 1


def test_report_of_tasks_outside_the_benchmark_has_no_tiers(tmp_path):
    """The demo's curriculum is no HumanSense task: no tier, task_type, paper or Paper Avg. columns and rows (they
    read 'unassigned' and '–' everywhere), and one line saying why."""
    rows = [row(i, task, "single_choice", "A", "A" if i % 2 else "B")
            for i, task in enumerate(["Curriculum_Video_Colour", "Curriculum_Audio_Pitch"] * 4)]
    _, report = _report(tmp_path, {"base": rows, "stage1_video": rows})
    assert "| Task | base | stage1_video |" in report and "| Tier" not in report and "**Paper Avg" not in report
    assert "| Curriculum_Video_Colour | 0.000 (0/4) | 0.000 (0/4) |" in report
    assert "unassigned" not in report and report.count("None of these tasks is in the HumanSense benchmark") == 1


def test_chart_legend_beside_the_bars_with_short_names_and_the_setting_once(tmp_path):
    """tasks.png: the legend lies outside the bars' axes and names each column by its short name, the setting is
    written once in a caption, and each tier is named once under its tasks ('unassigned' nowhere)."""
    import matplotlib.pyplot as plt

    from hs_rl.eval.scoring import describe_setting, tasks_figure

    mine = setting(prompts="hs-rl", prompt_source=None, think=True)
    models, _ = _report(tmp_path, {"paper_like": [{**r, "setting": setting()} for r in ROWS],
                                   "run/stage1_video/final": [{**r, "setting": mine} for r in ROWS],
                                   "stage2_audio": [{**r, "setting": mine} for r in ROWS]})
    fig = tasks_figure(models)
    try:
        fig.canvas.draw()
        ax = fig.axes[0]
        legend = ax.get_legend()
        assert [t.get_text() for t in legend.get_texts()] == [
            "paper (Qwen2.5-Omni-7B)", "paper_like", "stage1_video", "stage2_audio"]
        assert legend.get_window_extent().x0 >= ax.get_window_extent().x1  # beside the bars, not over them
        texts = [t.get_text() for t in fig.texts] + [t.get_text() for t in ax.texts] + [
            t.get_text() for t in ax.get_xticklabels()]
        caption = "\n".join(t.get_text() for t in fig.texts).replace("\n    ", " ")
        assert caption.count(describe_setting(mine)) == 1 and "stage1_video, stage2_audio: " in caption
        assert caption.count(describe_setting(setting())) == 1
        tiers = [t.get_text() for t in ax.texts if t.get_text() in ("L2", "L3", "L4", "not in the\nbenchmark")]
        assert tiers == ["L2", "L3", "L4", "not in the\nbenchmark"]
        assert not [t for t in texts if "unassigned" in t]
    finally:
        plt.close(fig)
