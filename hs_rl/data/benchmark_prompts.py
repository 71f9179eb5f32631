"""The HumanSense benchmark's own prompts, read at run time from the user's checkout of the benchmark code.

`--prompt_source DIR` (DIR = the checkout's ``HumanSense_bench/src``) makes every question's system and user
text what the benchmark itself builds for the same flags. Nothing of the benchmark is copied into hs-rl: its
files are *parsed* (Python's ``ast``, never imported or executed), and what is learned from them is:

* ``benchmark/Benchmark.py``: which template module the think / no-think runs import; the template chosen per
  question pattern and option count (the ``question_pattern == ...`` chain, ``len(options) == N`` inside it,
  and whether the options are passed to ``.format``); the task lists that ``--asr`` and ``--think_omini``
  restrict a run to; the tasks ``--audio`` gives their video's own audio track; and the text those flags
  prepend to the user turn (``inp = X + inp``), in the order the file applies them.
* the two template modules it imports (``benchmark/PROMPT_TEMPLATE.py``, ``..._think.py``): module-level
  string constants.
* ``model/Qwen25omini.py``: the system turn (the ``{"role": "system", ...}`` message of its conversation).

A question the benchmark has no template for (e.g. a yes/no question, or a single choice with six options) is
not asked in this setting, like in the benchmark, whose loop would otherwise reuse the previous question's
text; callers count and report those.
"""
from __future__ import annotations

import ast
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

BENCHMARK_FILE = "benchmark/Benchmark.py"
MODEL_FILE = "model/Qwen25omini.py"
# The benchmark flags hs-rl mirrors, keyed by the name Benchmark.py reads from `args`.
ASR_FLAG = "asr"
ANALYSIS_FLAG = "think_omini"
AUDIO_FLAG = "audio"
THINK_FLAG = "think"


class PromptSourceError(ValueError):
    """The --prompt_source folder is missing a file or holds one hs-rl cannot read; the message names it."""


class NotAsked(Exception):
    """The benchmark would not ask this question in this setting (the message says why)."""


@dataclass(frozen=True)
class Prefix:
    """Text one benchmark flag prepends to the user turn: literal parts and question fields, for some tasks."""

    flag: str
    parts: tuple[tuple[str, str], ...]  # ("text", literal) | ("field", question key)
    tasks: frozenset[str] | None  # None: every task

    def render(self, question: Mapping[str, Any], where: str) -> str:
        out = []
        for kind, value in self.parts:
            if kind == "text":
                out.append(value)
            elif value not in question or question[value] is None:
                raise PromptSourceError(f"{where}: the benchmark's --{self.flag} text needs the question's "
                                        f"{value!r} field, which this question lacks")
            else:
                out.append(str(question[value]))
        return "".join(out)


@dataclass(frozen=True)
class Branch:
    """The template a (pattern, option count) gets, and whether `.format` receives the options."""

    template: str
    with_options: bool


@dataclass(frozen=True)
class BenchmarkPrompts:
    """Everything the benchmark's prompt construction depends on, as read from one checkout."""

    root: Path
    version: str  # sha256 (12 hex) over the files read, in a fixed order
    system: str
    templates: dict[bool, dict[str, str]]  # think -> template name -> text
    template_files: dict[bool, str]
    branches: dict[tuple[str, int | None], Branch]
    audio_tasks: frozenset[str]
    only: dict[str, frozenset[str]]  # flag -> the tasks a run with that flag is restricted to
    prefixes: tuple[Prefix, ...]  # in the order Benchmark.py applies them
    files: tuple[str, ...] = field(default=())

    # ------------------------------------------------------------ per question

    def asked(self, task_type: str, asr: bool = False, analysis: bool = False) -> bool:
        """Whether a run with these flags asks questions of this task at all."""
        for flag, on in ((ASR_FLAG, asr), (ANALYSIS_FLAG, analysis)):
            if on and flag in self.only and task_type not in self.only[flag]:
                return False
        return True

    def audio_in_video(self, task_type: str, audio: bool) -> bool:
        """Whether the benchmark feeds this task's video with its own audio track (`--audio`)."""
        return audio and task_type in self.audio_tasks

    def branch(self, pattern: str, n_options: int) -> Branch:
        """The template of a question pattern with n options; NotAsked when the benchmark has none."""
        found = self.branches.get((pattern, n_options)) or self.branches.get((pattern, None))
        if found is None:
            counts = sorted(n for p, n in self.branches if p == pattern and n is not None)
            if counts:
                raise NotAsked(f"{pattern!r} with {n_options} options has no template "
                               f"(the benchmark handles {', '.join(map(str, counts))} options)")
            raise NotAsked(f"the benchmark has no template for question_pattern {pattern!r}")
        return found

    def user_text(self, question: Mapping[str, Any], think: bool, asr: bool = False, analysis: bool = False,
                  where: str = "question") -> str:
        """The user turn the benchmark builds for one raw question dict (its `question`, `options`, ...)."""
        pattern = str(question.get("question_pattern", ""))
        options = list(question.get("options") or [])
        chosen = self.branch(pattern, len(options))
        template = self.templates[think][chosen.template]
        try:
            text = template.format(question["question"], *options) if chosen.with_options \
                else template.format(question["question"])
        except IndexError:
            raise NotAsked(f"{chosen.template} has more slots than the question's {len(options)} options "
                           "(the benchmark would crash)") from None
        flags = {ASR_FLAG: asr, ANALYSIS_FLAG: analysis}
        task_type = str(question.get("task_type", ""))
        for prefix in self.prefixes:
            if flags.get(prefix.flag) and (prefix.tasks is None or task_type in prefix.tasks):
                text = prefix.render(question, where) + text
        return text

    def setting(self) -> dict[str, str]:
        """What a results line records about the source: where it was read and its content hash."""
        return {"prompt_source": str(self.root), "prompt_version": self.version}


# ---------------------------------------------------------------- reading the files

def _hint(root: Path) -> str:
    """Where the right folder probably is, when the user pointed at the repository or bench folder."""
    for guess in (root / "HumanSense_bench" / "src", root / "src"):
        if (guess / BENCHMARK_FILE).is_file():
            return f"; did you mean {guess}?"
    return " (it must be the HumanSense_bench/src folder of the benchmark code)"


def _parse(root: Path, relative: str) -> tuple[ast.Module, bytes]:
    path = root / relative
    if not path.is_file():
        raise PromptSourceError(f"--prompt_source {root}: needs {relative}, not found at {path}{_hint(root)}")
    data = path.read_bytes()
    try:
        return ast.parse(data, filename=str(path)), data
    except (SyntaxError, ValueError) as err:
        line = getattr(err, "lineno", None)
        raise PromptSourceError(f"{path}{f':{line}' if line else ''}: not valid Python "
                                f"({getattr(err, 'msg', err)}); --prompt_source needs it to read the prompts") \
            from None


def _args_flag(test: ast.expr) -> str | None:
    """'x' for an `if args.x:` test."""
    if isinstance(test, ast.Attribute) and isinstance(test.value, ast.Name) and test.value.id == "args":
        return test.attr
    return None


def _str_list(node: ast.expr) -> frozenset[str] | None:
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)) and all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
        return frozenset(e.value for e in node.elts)
    return None


def _task_test(test: ast.expr) -> tuple[str, frozenset[str]] | None:
    """('in'|'not in', tasks) for `question["task_type"] [not] in [...]`."""
    if (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.left, ast.Subscript)
            and isinstance(test.left.slice, ast.Constant) and test.left.slice.value == "task_type"):
        tasks = _str_list(test.comparators[0])
        if tasks is not None and isinstance(test.ops[0], (ast.In, ast.NotIn)):
            return ("in" if isinstance(test.ops[0], ast.In) else "not in"), tasks
    return None


def _string_parts(node: ast.expr, env: dict[str, tuple]) -> tuple[tuple[str, str], ...] | None:
    """A string expression of literals, names bound to such, and `question["field"]`, as parts."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return (("text", node.value),)
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id]
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
        return (("field", node.slice.value),)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _string_parts(node.left, env), _string_parts(node.right, env)
        if left is not None and right is not None:
            return left + right
    return None


def _prefixes(body: list[ast.stmt], flag: str, tasks: frozenset[str] | None, env: dict,
              found: list[Prefix]) -> None:
    """`inp = <string> + inp` statements of a flag's block (recursing into task-list ifs), in order."""
    for stmt in body:
        if isinstance(stmt, ast.If):
            test = _task_test(stmt.test)
            inner = test[1] if test and test[0] == "in" else tasks
            _prefixes(stmt.body, flag, inner, env, found)
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            target = stmt.targets[0].id
            value = stmt.value
            if (target == "inp" and isinstance(value, ast.BinOp) and isinstance(value.op, ast.Add)
                    and isinstance(value.right, ast.Name) and value.right.id == "inp"):
                parts = _string_parts(value.left, env)
                if parts is not None:
                    found.append(Prefix(flag, parts, tasks))
            else:
                parts = _string_parts(value, env)
                if parts is not None:
                    env[target] = parts


def _format_call(node: ast.expr) -> Branch | None:
    """`NAME.format(q, *options)` -> Branch(NAME, True)."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"
            and isinstance(node.func.value, ast.Name)):
        return Branch(node.func.value.id, any(isinstance(a, ast.Starred) for a in node.args))
    return None


def _assigned_format(body: list[ast.stmt]) -> Branch | None:
    for stmt in body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "inp" for t in stmt.targets):
            branch = _format_call(stmt.value)
            if branch:
                return branch
    return None


def _len_test(test: ast.expr) -> int | None:
    """N for `len(options) == N`."""
    if (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)
            and isinstance(test.left, ast.Call) and isinstance(test.left.func, ast.Name)
            and test.left.func.id == "len" and isinstance(test.comparators[0], ast.Constant)
            and isinstance(test.comparators[0].value, int)):
        return test.comparators[0].value
    return None


def _pattern_test(test: ast.expr) -> str | None:
    """The pattern of `question_pattern == "..."`."""
    if (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)
            and isinstance(test.left, ast.Name) and test.left.id == "question_pattern"
            and isinstance(test.comparators[0], ast.Constant) and isinstance(test.comparators[0].value, str)):
        return test.comparators[0].value
    return None


def _branches(tree: ast.Module) -> dict[tuple[str, int | None], Branch]:
    found: dict[tuple[str, int | None], Branch] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.If) or (pattern := _pattern_test(node.test)) is None:
            continue
        direct = _assigned_format(node.body)
        if direct:
            found.setdefault((pattern, None), direct)
        for stmt in node.body:
            chain = stmt
            while isinstance(chain, ast.If) and (count := _len_test(chain.test)) is not None:
                branch = _assigned_format(chain.body)
                if branch:
                    found.setdefault((pattern, count), branch)
                chain = chain.orelse[0] if len(chain.orelse) == 1 else None
    return found


def _module_file(module: str) -> str:
    """'benchmark.PROMPT_TEMPLATE' -> 'benchmark/PROMPT_TEMPLATE.py' (relative to the src folder)."""
    return module.replace(".", "/") + ".py"


def _template_imports(tree: ast.Module, where: str) -> dict[bool, str]:
    """think -> the template module file the `if args.think:` block imports (else-branch: no think)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _args_flag(node.test) == THINK_FLAG:
            think = [s for s in node.body if isinstance(s, ast.ImportFrom)]
            plain = [s for s in node.orelse if isinstance(s, ast.ImportFrom)]
            if think and plain and think[0].module and plain[0].module:
                return {True: _module_file(think[0].module), False: _module_file(plain[0].module)}
    raise PromptSourceError(f"{where}: no `if args.think: from ... import ...  else: from ... import ...` "
                            "choosing the template module; cannot tell which templates the benchmark uses")


def _string_constants(tree: ast.Module) -> dict[str, str]:
    return {t.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
            for t in node.targets if isinstance(t, ast.Name)}


def _system_texts(tree: ast.Module) -> list[str]:
    """The text of every `{"role": "system", "content": [{"type": "text", "text": "..."}]}` literal."""
    texts = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Dict):
            continue
        items = {k.value: v for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant)}
        role = items.get("role")
        if not (isinstance(role, ast.Constant) and role.value == "system"):
            continue
        content = items.get("content")
        parts = content.elts if isinstance(content, ast.List) else [content]
        for part in parts:
            if isinstance(part, ast.Constant) and isinstance(part.value, str):
                texts.append(part.value)
            elif isinstance(part, ast.Dict):
                fields = {k.value: v for k, v in zip(part.keys, part.values) if isinstance(k, ast.Constant)}
                text = fields.get("text")
                if isinstance(text, ast.Constant) and isinstance(text.value, str):
                    texts.append(text.value)
    return texts


def _benchmark_rules(tree: ast.Module, where: str) -> tuple[frozenset[str], dict[str, frozenset[str]], list[Prefix]]:
    """(audio tasks, per-flag task restriction, prefixes in order) from the `if args.<flag>:` blocks."""
    audio: frozenset[str] | None = None
    only: dict[str, frozenset[str]] = {}
    prefixes: list[Prefix] = []
    blocks = sorted((n for n in ast.walk(tree) if isinstance(n, ast.If) and _args_flag(n.test)),
                    key=lambda n: (n.lineno, n.col_offset))
    for block in blocks:
        flag = _args_flag(block.test)
        for stmt in block.body:
            if not isinstance(stmt, ast.If) or (test := _task_test(stmt.test)) is None:
                continue
            kind, tasks = test
            if kind == "not in" and any(isinstance(s, ast.Continue) for s in stmt.body):
                only.setdefault(flag, tasks)
            elif kind == "in" and flag == AUDIO_FLAG:
                audio = tasks
        if flag in (ASR_FLAG, ANALYSIS_FLAG):
            _prefixes(block.body, flag, None, {}, prefixes)
    missing = []
    if audio is None:
        missing.append("`if args.audio:` listing the tasks that hear their video's audio")
    for flag in (ASR_FLAG, ANALYSIS_FLAG):
        if flag not in only:
            missing.append(f"`if args.{flag}:` listing the tasks a --{flag} run is restricted to")
        if not any(p.flag == flag for p in prefixes):
            missing.append(f"`if args.{flag}:` prepending its text to `inp`")
    if missing:
        raise PromptSourceError(f"{where}: cannot find " + "; ".join(missing)
                                + " (is this the HumanSense benchmark's Benchmark.py?)")
    return audio, only, prefixes


def load_prompt_source(root: str | Path) -> BenchmarkPrompts:
    """Read the benchmark's prompt construction from `root` (its HumanSense_bench/src); errors name the file."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise PromptSourceError(f"--prompt_source {root}: no such folder (give the HumanSense_bench/src folder "
                                f"of the benchmark code; it needs {BENCHMARK_FILE} and {MODEL_FILE})")
    return _load_cached(root.resolve(), _stamp(root))


def _stamp(root: Path) -> tuple:
    """Modification times of the files read, so an edited checkout is re-read."""
    paths = sorted((root / "benchmark").glob("*.py")) + [root / MODEL_FILE]
    return tuple((p.name, p.stat().st_mtime_ns) for p in paths if p.is_file())


@lru_cache(maxsize=8)
def _load_cached(root: Path, _stamp: tuple) -> BenchmarkPrompts:
    digest = hashlib.sha256()
    bench_tree, data = _parse(root, BENCHMARK_FILE)
    read = [(BENCHMARK_FILE, data)]
    where = str(root / BENCHMARK_FILE)
    modules = _template_imports(bench_tree, where)
    branches = _branches(bench_tree)
    if not branches:
        raise PromptSourceError(f"{where}: no `question_pattern == ...` branch assigning `inp = TEMPLATE.format(...)`"
                                "; cannot tell which template each question gets")
    templates: dict[bool, dict[str, str]] = {}
    for think, relative in modules.items():
        tree, data = _parse(root, relative)
        read.append((relative, data))
        constants = _string_constants(tree)
        absent = sorted({b.template for b in branches.values()} - constants.keys())
        if absent:
            raise PromptSourceError(f"{root / relative}: no string constant {', '.join(absent)} "
                                    f"(used by {BENCHMARK_FILE})")
        templates[think] = constants
    audio, only, prefixes = _benchmark_rules(bench_tree, where)
    model_tree, data = _parse(root, MODEL_FILE)
    read.append((MODEL_FILE, data))
    systems = list(dict.fromkeys(_system_texts(model_tree)))
    if len(systems) != 1:
        found = "none" if not systems else f"{len(systems)} different ones"
        raise PromptSourceError(f"{root / MODEL_FILE}: expected one system text in a "
                                f"{{\"role\": \"system\", ...}} message, found {found}")
    for name, content in read:
        digest.update(name.encode() + b"\0" + content + b"\0")
    return BenchmarkPrompts(root=root, version=digest.hexdigest()[:12], system=systems[0], templates=templates,
                            template_files=modules, branches=branches, audio_tasks=audio, only=only,
                            prefixes=tuple(prefixes), files=tuple(name for name, _ in read))
