"""`hs-rl score`: accuracy per task, tier and question type for one or several result files, with a report.

Reads our results JSONL (`id`, `task_type`, `question_type`, `options`, `answer`, `prediction`) and the
upstream HumanSense result files (the benchmark JSON with each model's answer stored in the question
dicts under the model's name). Every answer is scored by `hs_rl.data.answers`, the same code as the reward.

Each column's answers were asked in a setting (the `setting` our results lines record; for upstream files, the
flags eval.sh writes into the file name): the report says each setting once, naming its columns, above the table
and as the chart's caption; the chart's legend names the columns only. A task outside the benchmark's tiers is
marked so once; a report with no benchmark task (the demo's curriculum) has no tier or paper columns at all.
The paper's Qwen2.5-Omni-7B column is printed only when some column was asked as the paper did (the benchmark's
own prompts, no think, audio on, no ASR or analysis prompt, greedy); otherwise it is left out with a note saying
why.
"""
from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hs_rl.data.answers import extract_answer, question_type_from_pattern, score_answer
from hs_rl.data.records import QUESTION_TYPES, iter_jsonl
from hs_rl.eval.tiers import UNASSIGNED, classify, paper_avg_baseline, task_info, tasks, tier_names

SCORING_RULE = (
    "Scored by hs_rl.data.answers (the same code as the accuracy reward): an empty or unreadable answer counts "
    "as WRONG and numbers are read whole (\"10\" is ten).")
SCORING_NOTE = SCORING_RULE + (
    " The released HumanSense scorer skipped empty "
    "answers (they left the denominator, so its accuracy reads higher) and read only the first character "
    "of a numeric answer; figures here are therefore not directly comparable where answers are empty or "
    "numbers exceed 9. It also left Abnormal_Recognition out; it is scored here. Multi-choice: a correct "
    "strict subset earns 0.5, so `correct` may be fractional."
)

PAPER_SETTING_TEXT = "benchmark prompts, no-think, audio on, greedy (paper Table 1)"
# What a setting must say to be compared with the paper's Table 1 column.
PAPER_SETTING = {"prompts": "benchmark", "think": False, "audio": True, "asr": False, "analysis_prompt": False}

# Fields of an upstream question dict that are data, not a model's answer.
KNOWN_QUESTION_FIELDS = frozenset({
    "question", "options", "answer", "question_pattern", "task_type", "full_frame_number", "fps",
    "asr_en", "asr_zh", "asr", "id", "question_id", "qid", "video_path", "audio_path", "duration", "time",
    "video_or_clip", "start_time", "end_time", "subtitle", "modality", "video", "audio", "source",
})


@dataclass
class ScoreArguments:
    """Options of `hs-rl score RESULTS... --out DIR`."""

    results: list[str] = field(metadata={"help": "result files: our results JSONL or upstream benchmark JSON"})
    out: str = field(metadata={"help": "report directory (scores.json, report.md, tasks.png)"})
    model: list[str] | None = field(default=None, metadata={
        "help": "one name per file (or one for all): the column name, and for upstream files the key "
                "each answer is stored under (detected when it is the only unknown key)"})
    labels: list[str] | None = field(default=None, metadata={"help": "column labels overriding --model"})


@dataclass
class Item:
    """One scored question: where it came from, how it is grouped and what it earned."""

    id: str
    task_type: str
    question_type: str
    score: float
    empty: bool


# ---------------------------------------------------------------- reading

def _prediction_text(value: Any) -> str:
    """A stored prediction as text (upstream files sometimes hold lists)."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def _item(where: str, ident: str, task_type: Any, qtype: Any, pattern: Any, options: Any, key: Any,
          prediction: Any) -> Item:
    """Score one question, with errors naming the file position."""
    if not task_type:
        raise ValueError(f"{where}: question has no task_type")
    if not qtype and pattern:
        try:
            qtype = question_type_from_pattern(pattern)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from err
    if qtype not in QUESTION_TYPES:
        raise ValueError(f"{where}: unknown question_type {qtype!r}; known: {list(QUESTION_TYPES)}")
    text = _prediction_text(prediction)
    score = score_answer(text, key, qtype, list(options or []), tagged=False)
    return Item(id=str(ident), task_type=str(task_type), question_type=qtype, score=score,
                empty=not extract_answer(text))


def _question_dicts(entries: list[Any], path: str) -> Iterable[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(position, entry, question) for every question of an upstream benchmark file."""
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "questions" not in entry:
            raise ValueError(f"{path}: entry {i} has no 'questions'")
        questions = entry["questions"]
        questions = [questions] if isinstance(questions, dict) else list(questions or [])
        for j, question in enumerate(questions):
            yield f"{path}: entry {i} question {j}", entry, question


def detect_model_key(entries: list[Any], path: str = "<data>") -> str:
    """The one key holding model answers: the only string-valued key outside the known fields."""
    candidates: set[str] = set()
    for _, _, question in _question_dicts(entries, path):
        candidates |= {k for k, v in question.items()
                       if k not in KNOWN_QUESTION_FIELDS and (isinstance(v, str) or v is None)}
    if len(candidates) == 1:
        return candidates.pop()
    found = ", ".join(sorted(candidates)) or "none"
    raise ValueError(f"{path}: cannot tell which key holds the model's answers (candidates: {found}); "
                     "pass --model NAME")


def load_upstream(entries: list[Any], path: str, model: str | None = None) -> tuple[list[Item], str]:
    """Score an upstream benchmark file; returns the items and the model key used."""
    key = model or detect_model_key(entries, path)
    items = []
    for where, entry, question in _question_dicts(entries, path):
        items.append(_item(where, question.get("id") or where.split(": ", 1)[1],
                           question.get("task_type") or entry.get("task_type"), None,
                           question.get("question_pattern"), question.get("options"), question.get("answer"),
                           question.get(key)))
    if items and all(it.empty for it in items):
        raise ValueError(f"{path}: no question has an answer under {key!r}; check --model")
    return items, key


def _load_ours(rows: Iterable[tuple[str, dict[str, Any]]]) -> list[Item]:
    """Score our results rows."""
    return [_item(where, row.get("id", where), row.get("task_type"), row.get("question_type"),
                  row.get("question_pattern"), row.get("options"), row.get("answer"), row.get("prediction"))
            for where, row in rows]


def _upstream_setting(path: str) -> dict[str, Any]:
    """The benchmark's own output file: flags from the suffixes its eval.sh appends (_audio, _think, _asr)."""
    stem = Path(path).stem
    flags = set(re.findall(r"_(audio|think|asr)(?=_|$)", stem))
    return {"prompts": "benchmark", "prompt_source": "upstream output (flags read from the file name)",
            "think": "think" in flags, "audio": "audio" in flags, "asr": "asr" in flags, "analysis_prompt": False,
            "decoding": {"do_sample": False}}


def result_setting(path: str | Path) -> dict[str, Any] | None:
    """The setting a results file was asked in: ours from its lines (None when they record none, or
    {"mixed": [...]} when lines disagree); an upstream file's from its name."""
    path = str(path)
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        data = [data]
    if isinstance(data, list) and data and all(isinstance(e, dict) and "questions" in e for e in data):
        return _upstream_setting(path)
    rows = data if isinstance(data, list) else [row for _, row in iter_jsonl(path)]
    settings = list({json.dumps(row.get("setting"), sort_keys=True): row.get("setting") for row in rows
                     if isinstance(row, dict)}.values())
    if len(settings) > 1:
        return {"mixed": settings}
    return settings[0] if settings else None


def paper_mismatch(setting: dict[str, Any] | None) -> list[str]:
    """Why a column cannot be set beside the paper's Table 1 (empty when it can)."""
    if not setting:
        return ["its results record no setting"]
    if "mixed" in setting:
        return ["its lines were asked in different settings"]
    reasons = [f"{key}={setting.get(key)!r} (paper: {want!r})" for key, want in PAPER_SETTING.items()
               if setting.get(key) != want]
    if (setting.get("decoding") or {}).get("do_sample"):
        reasons.append("sampled decoding (paper: greedy)")
    return reasons


def describe_setting(setting: dict[str, Any] | None) -> str:
    """A short human label: prompts (+ version), think, audio, asr/analysis, decoding, frames."""
    if not setting:
        return "setting not recorded"
    if "mixed" in setting:
        return "mixed settings"
    prompts = "benchmark prompts" if setting.get("prompts") == "benchmark" else "hs-rl prompts"
    if setting.get("prompt_version"):
        prompts += f" {setting['prompt_version']}"
    parts = [prompts, "think" if setting.get("think") else "no-think",
             "audio on" if setting.get("audio", True) else "audio off"]
    parts += [name for name in ("asr", "analysis_prompt") if setting.get(name)]
    decoding = setting.get("decoding") or {}
    parts.append("sampled" if decoding.get("do_sample") else "greedy")
    if decoding.get("max_new_tokens"):
        parts.append(f"{decoding['max_new_tokens']} new tokens")
    frames = setting.get("frames") or {}
    if frames:
        fps = frames.get("fps")
        parts.append(f"{'fps rule' if fps == 'benchmark rule' else f'{fps} fps'}, ≤{frames.get('max_frames')} frames")
    if setting.get("prompt_source") and str(setting["prompt_source"]).startswith("upstream"):
        parts.append("upstream file")
    return ", ".join(parts)


def load_results(path: str | Path, model: str | None = None) -> tuple[list[Item], str | None]:
    """Score every question of a results file (ours or upstream); returns items and the upstream key."""
    path = str(path)
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None  # JSON Lines
    if isinstance(data, dict):
        data = [data]
    if isinstance(data, list):
        if data and all(isinstance(e, dict) and "questions" in e for e in data):
            return load_upstream(data, path, model)
        return _load_ours((f"{path}: item {i}", row) for i, row in enumerate(data)), None
    return _load_ours((f"{path}:{n}", row) for n, row in iter_jsonl(path)), None


# ---------------------------------------------------------------- aggregating

def _bucket(correct: float, total: int, empty: int = 0) -> dict[str, Any]:
    """A correct/total/accuracy cell."""
    return {"correct": round(correct, 6), "total": total, "accuracy": correct / total if total else None,
            "empty": empty}


def score_items(items: Sequence[Item]) -> dict[str, Any]:
    """Accuracy per task, tier, question type and overall, plus the paper's 13-task average."""
    sums: dict[str, dict[str, list]] = {"tasks": defaultdict(list), "question_types": defaultdict(list)}
    for it in items:
        sums["tasks"][it.task_type].append(it)
        sums["question_types"][it.question_type].append(it)

    def cell(group: Sequence[Item]) -> dict[str, Any]:
        return _bucket(sum(i.score for i in group), len(group), sum(i.empty for i in group))

    order = {abbrev: n for n, abbrev in enumerate(tasks())}
    task_rows: dict[str, Any] = {}
    for task_type in sorted(sums["tasks"], key=lambda t: (order.get(classify(t)[1], len(order)), t)):
        tier, abbrev = classify(task_type)
        info = task_info(task_type)
        task_rows[task_type] = {**cell(sums["tasks"][task_type]), "tier": tier, "abbrev": abbrev,
                                "baseline": info.baseline if info else None}
    tier_rows: dict[str, Any] = {}
    for tier in [*tier_names(), UNASSIGNED]:
        members = [t for t, row in task_rows.items() if row["tier"] == tier]
        if not members:
            continue
        group = [i for t in members for i in sums["tasks"][t]]
        accs = [task_rows[t]["accuracy"] for t in members]
        tier_rows[tier] = {**cell(group), "task_mean": sum(accs) / len(accs), "tasks": members}
    qtype_rows = {q: cell(sums["question_types"][q]) for q in QUESTION_TYPES if q in sums["question_types"]}
    in_avg = {row["abbrev"]: row["accuracy"] for t, row in task_rows.items()
              if (info := task_info(t)) is not None and info.in_paper_avg}
    expected = [a for a, info in tasks().items() if info.in_paper_avg]
    return {
        "tasks": task_rows,
        "tiers": tier_rows,
        "question_types": qtype_rows,
        "all": cell(items),
        # Unweighted mean over whichever of the 13 video tasks are present (see paper_avg_missing).
        "paper_avg": sum(in_avg.values()) / len(in_avg) if in_avg else None,
        "paper_avg_tasks": [a for a in expected if a in in_avg],
        "paper_avg_missing": [a for a in expected if a not in in_avg],
        "unassigned_task_types": [t for t, row in task_rows.items() if row["tier"] == UNASSIGNED],
        "note": SCORING_NOTE,
    }


# ---------------------------------------------------------------- reporting

def _fmt(cell: dict[str, Any] | None) -> str:
    """"0.600 (60/100)" for a table cell; an en dash when absent."""
    if not cell or cell.get("accuracy") is None:
        return "–"
    correct = cell["correct"]
    shown = int(correct) if float(correct).is_integer() else round(correct, 1)
    return f"{cell['accuracy']:.3f} ({shown}/{cell['total']})"


def _task_order(models: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(tier, abbrev, task_type) of every task any model has, grouped by tier in benchmark order."""
    seen: dict[str, tuple[str, str]] = {}
    for scores in models.values():
        for task_type, row in scores["tasks"].items():
            seen.setdefault(task_type, (row["tier"], row["abbrev"]))
    order = {abbrev: n for n, abbrev in enumerate(tasks())}
    tiers = {t: n for n, t in enumerate([*tier_names(), UNASSIGNED])}
    rows = [(tier, abbrev, task_type) for task_type, (tier, abbrev) in seen.items()]
    return sorted(rows, key=lambda r: (tiers[r[0]], order.get(r[1], len(order)), r[2]))


def show_paper(models: dict[str, dict[str, Any]]) -> bool:
    """The paper's column is printed only when some column was asked in the paper's setting."""
    return any(not scores.get("paper_mismatch") for scores in models.values())


OUTSIDE_LABEL = "not in the benchmark"


def _in_benchmark(rows: list[tuple[str, str, str]]) -> bool:
    """Whether any task of the report is one of the benchmark's (the rest have no tier, baseline or paper avg)."""
    return any(tier != UNASSIGNED for tier, _, _ in rows)


def _tier_label(tier: str) -> str:
    return OUTSIDE_LABEL if tier == UNASSIGNED else tier


def short_label(label: str) -> str:
    """A column's name as a legend shows it: a path's last folder, the stage's for its `final` or a checkpoint
    (`run/stage1_video/final` -> `stage1_video`, `run/stage1_video/checkpoint-40` -> `stage1_video/checkpoint-40`),
    anything else as given."""
    if "/" not in label.strip("/"):
        return label
    parts = [p for p in label.split("/") if p]
    if len(parts) > 1 and (parts[-1] == "final" or parts[-1].startswith("checkpoint-")):
        return parts[-2] if parts[-1] == "final" else f"{parts[-2]}/{parts[-1]}"
    return parts[-1]


def _legend_names(labels: list[str]) -> list[str]:
    """`short_label` of each column, unless two would then read the same."""
    short = [short_label(label) for label in labels]
    return short if len(set(short)) == len(short) else labels


def setting_groups(models: dict[str, dict[str, Any]]) -> list[tuple[list[str], str]]:
    """Each distinct setting once, with the columns asked in it (in column order); the paper's setting says so."""
    groups: dict[str, list[str]] = {}
    for label, scores in models.items():
        text = describe_setting(scores.get("setting"))
        if scores.get("setting") and not scores.get("paper_mismatch"):
            text += " (the paper's setting)"
        groups.setdefault(text, []).append(label)
    return [(labels, text) for text, labels in groups.items()]


def _settings_lines(models: dict[str, dict[str, Any]]) -> list[str]:
    """The setting(s) the columns were asked in, said once: one line when all share it, else one per setting."""
    groups = setting_groups(models)
    if len(groups) == 1:
        return [f"Asked in: {groups[0][1]}."]
    return ["Asked in:", "", *(f"- {', '.join(labels)}: {text}" for labels, text in groups)]


def _joined_notes(models: dict[str, dict[str, Any]], note: Any) -> list[str]:
    """A note per column, said once: `note(scores)` -> text or None; columns with the same text share a line
    (no column name when every column has it)."""
    texts: dict[str, list[str]] = {}
    for label, scores in models.items():
        text = note(scores)
        if text:
            texts.setdefault(text, []).append(label)
    return [f"- {text}" if len(labels) == len(models) else f"- {', '.join(labels)}: {text}"
            for text, labels in texts.items()]


def render_markdown(models: dict[str, dict[str, Any]]) -> str:
    """Side-by-side Markdown: the setting(s) once, then task rows grouped by tier, one column per model, plus the
    paper baseline when a column's setting matches the paper's; notes said once each, after the tables. With no
    task of the benchmark (the demo's curriculum), no tier, paper or Paper Avg. columns and rows at all."""
    labels = list(models)
    rows = _task_order(models)
    benchmark = _in_benchmark(rows)
    paper = benchmark and show_paper(models)
    pad = "| " if paper else ""  # the paper column's cell, present only when it is shown
    lines = ["# HumanSense scores" if benchmark else "# Scores per task", "", *_settings_lines(models), ""]
    if benchmark:
        lines += ["| Tier | Task | task_type | " + ("Paper (Qwen2.5-Omni-7B) | " if paper else "")
                  + " | ".join(labels) + " |", "|" + "---|" * (3 + paper + len(labels))]
    else:
        lines += ["| Task | " + " | ".join(labels) + " |", "|" + "---|" * (1 + len(labels))]
    for tier in dict.fromkeys(r[0] for r in rows):
        group = [r for r in rows if r[0] == tier]
        for n, (_, abbrev, task_type) in enumerate(group):
            cells = " | ".join(_fmt(models[m]["tasks"].get(task_type)) for m in labels)
            if not benchmark:
                lines.append(f"| {task_type} | {cells} |")
            elif tier == UNASSIGNED:  # named once, on the group's first row: its rows have no tier to repeat
                lines.append(f"| {OUTSIDE_LABEL if n == 0 else ''} | {task_type} | | {pad}{cells} |")
            else:
                info = task_info(task_type)
                base = f"{info.baseline:.3f} | " if info and info.baseline is not None else "– | "
                lines.append(f"| {tier} | {abbrev} | `{task_type}` | " + (base if paper else "") + cells + " |")
        if benchmark:
            cells = " | ".join(_fmt(models[m]["tiers"].get(tier)) for m in labels)
            lines.append(f"| **{_tier_label(tier)}** | **all** | | {pad}{cells} |")
    if benchmark:
        base_avg = paper_avg_baseline()
        avgs = [f"{models[m]['paper_avg']:.3f}" if models[m]["paper_avg"] is not None else "–" for m in labels]
        base_cell = (f"{base_avg:.3f} | " if base_avg is not None else "– | ") if paper else ""
        lines.append("| | **Paper Avg. (13 video tasks)** | | " + base_cell + " | ".join(avgs) + " |")
        lines.append(f"| | **All questions** | | {pad}" + " | ".join(_fmt(models[m]["all"]) for m in labels) + " |")
    else:
        lines.append("| **All questions** | " + " | ".join(_fmt(models[m]["all"]) for m in labels) + " |")
    qtypes = [q for q in QUESTION_TYPES if any(q in models[m]["question_types"] for m in labels)]
    if len(qtypes) > 1:  # one type only: its row would repeat "All questions"
        lines += ["", "## By question type", "", "| question_type | " + " | ".join(labels) + " |",
                  "|" + "---|" * (1 + len(labels))]
        lines += [f"| {q} | " + " | ".join(_fmt(models[m]["question_types"].get(q)) for m in labels) + " |"
                  for q in qtypes]
    notes = []
    if benchmark and not paper:
        notes.append(f"- The paper's Qwen2.5-Omni-7B column is left out: no column was asked in its setting "
                     f"({PAPER_SETTING_TEXT}; `hs-rl eval --prompt_source HumanSense_bench/src --no_think`).")
    if paper:
        notes += _joined_notes(models, lambda s: s.get("paper_mismatch") and (
            f"not the paper's setting ({'; '.join(s['paper_mismatch'])}): do not compare it with the paper column"))
    if benchmark:
        notes += _joined_notes(models, lambda s: s["paper_avg_missing"] and (
            f"Paper Avg. over {len(s['paper_avg_tasks'])} of 13 tasks (missing: {', '.join(s['paper_avg_missing'])})"))
        outside = list(dict.fromkeys(t for _, _, t in rows if classify(t)[0] == UNASSIGNED))
        if outside:
            notes.append(f"- {OUTSIDE_LABEL.capitalize()} (no tier in hs_rl/resources/tiers.yaml): "
                         f"{', '.join(outside)}")
    else:
        notes.append("- None of these tasks is in the HumanSense benchmark (hs_rl/resources/tiers.yaml): no tiers, "
                     "no paper column, no Paper Avg.")
    empties = [f"{m} {models[m]['all']['empty']}" for m in labels if models[m]["all"]["empty"]]
    if empties:
        notes.append(f"- Empty answers, counted wrong: {', '.join(empties)}")
    notes.append(f"- {SCORING_NOTE if benchmark else SCORING_RULE}")  # the released scorer: beside its tasks only
    lines += ["", "## Notes", "", *notes]
    return "\n".join(lines) + "\n"


def _wrapped(name: str, width: int = 14) -> str:
    """A long task name on several lines, broken at its underscores."""
    lines: list[str] = []
    for part in name.split("_"):
        if lines and len(lines[-1]) + 1 + len(part) <= width:
            lines[-1] += "_" + part
        else:
            lines.append(part)
    return "\n".join(lines)


def plot_tasks(models: dict[str, dict[str, Any]], path: str | Path) -> None:
    """Write `tasks_figure` as a PNG (legend and caption included)."""
    import matplotlib.pyplot as plt

    fig = tasks_figure(models)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def tasks_figure(models: dict[str, dict[str, Any]]) -> Any:
    """Grouped bars: per task one bar per model (its value on top while they fit), tasks grouped by tier with the
    tier named once under its group, the paper baseline as a black tick where a column was asked in the paper's
    setting; the legend outside the bars with short model names, and the setting(s) once in a caption."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _task_order(models)
    labels = list(models)
    benchmark = _in_benchmark(rows)
    width = 0.8 / max(1, len(labels))
    bars = len(rows) * len(labels)
    fig_width = min(18.0, max(5.0, len(rows) * max(1.0, 0.3 * len(labels) + 0.3) + 2.5))
    fig, ax = plt.subplots(figsize=(fig_width, 4.2))
    ax.grid(axis="y", color="0.92", zorder=0)
    ax.set_axisbelow(True)
    names = dict(zip(labels, _legend_names(labels)))
    for k, label in enumerate(labels):
        heights = [(models[label]["tasks"].get(t) or {}).get("accuracy") for _, _, t in rows]
        xs = [n - 0.4 + width * (k + 0.5) for n in range(len(rows))]
        drawn = ax.bar(xs, [h or 0.0 for h in heights], width=width * 0.92, label=names[label])
        if bars <= 30:  # each bar's value, while they fit
            ax.bar_label(drawn, labels=["–" if h is None else f"{h:.2f}" for h in heights], fontsize=7, padding=1)
    labelled = False
    for n, (_, _, task_type) in enumerate(rows if benchmark and show_paper(models) else []):
        info = task_info(task_type)
        if info and info.baseline is not None:
            ax.hlines(info.baseline, n - 0.44, n + 0.44, colors="black", linewidth=1.5,
                      label=None if labelled else "paper (Qwen2.5-Omni-7B)")
            labelled = True
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([abbrev if tier != UNASSIGNED else _wrapped(task_type) for tier, abbrev, task_type in rows],
                       fontsize=8)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_ylim(0, 1.08)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_ylabel("accuracy")
    ax.spines[["top", "right"]].set_visible(False)
    if benchmark:  # each tier named once under its group, a thin line between groups
        tiers = list(dict.fromkeys(r[0] for r in rows))
        lines_below = max((_wrapped(t).count("\n") + 1 if tier == UNASSIGNED else 1) for tier, _, t in rows)
        for tier in tiers:
            members = [n for n, r in enumerate(rows) if r[0] == tier]
            name = "not in the\nbenchmark" if tier == UNASSIGNED and len(members) < 3 else _tier_label(tier)
            ax.annotate(name, xy=((members[0] + members[-1]) / 2, 0), xycoords=("data", "axes fraction"),
                        xytext=(0, -14 - 11 * lines_below), textcoords="offset points", ha="center", va="top",
                        fontsize=9 if tier != UNASSIGNED else 8, fontweight="bold")
            if members[0] > 0:
                ax.axvline(members[0] - 0.5, color="0.8", linewidth=0.8, zorder=0)
    ax.set_title("HumanSense accuracy per task" if benchmark else "Accuracy per task (tasks outside HumanSense)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    groups = setting_groups(models)
    caption = (f"Asked in: {groups[0][1]}" if len(groups) == 1
               else "Asked in:\n" + "\n".join(f"{', '.join(names[m] for m in g)}: {text}" for g, text in groups))
    wrapped = "\n".join(textwrap.fill(line, int(fig_width * 16), subsequent_indent="    ")
                        for line in caption.splitlines())
    fig.text(0.01, -0.01, wrapped, ha="left", va="top", fontsize=7.5, color="0.25")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- command

def _labels(args: ScoreArguments) -> tuple[list[str | None], list[str]]:
    """(upstream model key per file, column label per file), checked against the number of files."""
    n = len(args.results)
    models = list(args.model or [])
    if models and len(models) not in (1, n):
        raise ValueError(f"--model takes one name or one per result file ({n}), got {len(models)}")
    keys: list[str | None] = (models * n if len(models) == 1 else models) or [None] * n
    if args.labels and len(args.labels) != n:
        raise ValueError(f"--labels takes one label per result file ({n}), got {len(args.labels)}")
    labels = list(args.labels) if args.labels else [
        (k if len(set(models)) == n and k else _default_label(p)) for k, p in zip(keys, args.results)]
    unique: list[str] = []
    for label in labels:
        name, i = label, 2
        while name in unique:
            name, i = f"{label} ({i})", i + 1
        unique.append(name)
    return keys, unique


def _default_label(path: str | Path) -> str:
    """A column's label without --labels: the model name our results lines store (`hs-rl eval --label`, the stage's
    name under the pipeline), else the file's name without its suffix."""
    try:
        with open(path, encoding="utf-8") as handle:
            first = json.loads(handle.readline() or "null")
    except (OSError, ValueError):
        first = None
    label = first.get("model") if isinstance(first, dict) and "questions" not in first else None
    return label if isinstance(label, str) and label else Path(path).stem


def score_files(args: ScoreArguments) -> dict[str, Any]:
    """Score every file and write scores.json, report.md and tasks.png under args.out."""
    if not args.results:
        raise ValueError("hs-rl score: give at least one result file")
    keys, labels = _labels(args)
    models: dict[str, dict[str, Any]] = {}
    for path, key, label in zip(args.results, keys, labels):
        items, used = load_results(path, key)
        scores = score_items(items)
        scores["source"] = str(path)
        scores["setting"] = result_setting(path)
        scores["paper_mismatch"] = paper_mismatch(scores["setting"])
        if used is not None:
            scores["model_key"] = used
        models[label] = scores
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = next(iter(models.values())) if len(models) == 1 else {"models": models, "note": SCORING_NOTE}
    (out / "scores.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
    (out / "report.md").write_text(render_markdown(models), encoding="utf-8")
    plot_tasks(models, out / "tasks.png")
    return payload


def run_score(args: ScoreArguments) -> int:
    """Entry point of `hs-rl score`."""
    payload = score_files(args)
    models = payload["models"] if "models" in payload else {"": payload}
    for label, scores in models.items():
        avg = scores["paper_avg"]
        overall = scores["all"]["accuracy"]
        covered = len(scores.get("paper_avg_tasks") or [])
        of = covered + len(scores.get("paper_avg_missing") or [])
        print(f"{label or args.results[0]}: all {overall if overall is None else round(overall, 4)} "
              f"({scores['all']['total']} questions), paper avg "
              f"{'–' if avg is None or math.isnan(avg) else round(avg, 4)} ({covered} of {of} tasks) "
              f"[{describe_setting(scores.get('setting'))}]")
        if scores.get("paper_mismatch"):
            print(f"  not comparable with the paper's Table 1: {'; '.join(scores['paper_mismatch'])}")
    print(f"report written to {args.out}")
    return 0
