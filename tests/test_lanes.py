"""The fast lane stays fast: every test that starts processes through a launcher (accelerate launch, torchrun, the
DeepSpeed launch behind them) is marked slow, so `pytest -m "not slow"` never waits on a multi-process run.

Read from the test sources (ast, no import, no collection): a test launches when its body, a module-level function
it calls (transitively), or a fixture of its module that it takes names a launcher: the module
`torch.distributed.run` / `accelerate.commands.launch`, the `torchrun` command, or an `accelerate` word followed by
`launch` in a command list. Lists inside an assert or a comparison are expected output (dry runs), not launches.
"""
from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
LAUNCHER_MODULES = {"torch.distributed.run", "accelerate.commands.launch", "torchrun"}


def _is_slow_mark(node: ast.expr) -> bool:
    """`pytest.mark.slow` or `pytest.mark.slow(...)`."""
    node = node.func if isinstance(node, ast.Call) else node
    return isinstance(node, ast.Attribute) and node.attr == "slow"


def _module_is_slow(tree: ast.Module) -> bool:
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in statement.targets):
            value = statement.value
            marks = value.elts if isinstance(value, (ast.List, ast.Tuple)) else [value]
            return any(_is_slow_mark(mark) for mark in marks)
    return False


def _expected_output(tree: ast.AST) -> set[int]:
    """ids of the nodes inside an assert or a comparison."""
    return {id(inner) for node in ast.walk(tree) if isinstance(node, (ast.Assert, ast.Compare))
            for inner in ast.walk(node)}


def _names_a_launcher(function: ast.AST) -> bool:
    skip = _expected_output(function)
    for node in ast.walk(function):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Constant) and node.value in LAUNCHER_MODULES:
            return True
        if isinstance(node, (ast.List, ast.Tuple)):
            words = [e.value if isinstance(e, ast.Constant) else getattr(e, "id", None) for e in node.elts]
            if any(isinstance(a, str) and "accelerate" in a and b == "launch" for a, b in zip(words, words[1:])):
                return True
    return False


def launching_tests(path: Path) -> dict[str, bool]:
    """{test name: marked slow} for the tests of one file that launch processes."""
    tree = ast.parse(path.read_text(), filename=str(path))
    functions = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    module_slow = _module_is_slow(tree)

    def launches(function: ast.FunctionDef, seen: set[str]) -> bool:
        if function.name in seen:
            return False
        seen.add(function.name)
        reached = [functions[a.arg] for a in function.args.args if a.arg in functions]  # this module's fixtures
        reached += [functions[n.func.id] for n in ast.walk(function)
                    if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in functions]
        return _names_a_launcher(function) or any(launches(f, seen) for f in reached)

    return {name: module_slow or any(_is_slow_mark(d) for d in function.decorator_list)
            for name, function in functions.items() if name.startswith("test_") and launches(function, set())}


def test_every_launching_test_is_marked_slow():
    found = {f"{path.relative_to(TESTS)}::{name}": slow for path in sorted(TESTS.rglob("test_*.py"))
             for name, slow in launching_tests(path).items()}
    # the check itself must see the launches it is about (a scan that finds nothing would pass on any tree)
    assert "grpo/test_deepspeed_cpu.py::test_deepspeed_cpu_two_processes" in found
    assert "grpo/test_distributed.py::test_two_processes_split_prompts_group_and_resume_inside_epoch_1" in found
    assert "test_user_errors.py::test_a_user_error_under_accelerate_launch_is_one_line" in found
    unmarked = sorted(name for name, slow in found.items() if not slow)
    assert unmarked == [], f"these launch processes (accelerate/torchrun); mark them @pytest.mark.slow: {unmarked}"


def test_a_dry_run_compared_with_its_expected_command_is_no_launch(tmp_path):
    """The dry-run tests of launch/ compare printed commands with `["accelerate", "launch", …]`; a real launch of
    the same list counts, even when the test calls a helper that builds it."""
    test = tmp_path / "test_example.py"
    test.write_text(
        "import subprocess\n"
        "def helper():\n    return subprocess.run(['accelerate', 'launch', 'x.py'])\n"
        "def test_dry(words):\n    assert words[:2] == ['accelerate', 'launch']\n"
        "def test_real():\n    helper()\n")
    assert launching_tests(test) == {"test_real": False}
    test.write_text("import pytest\npytestmark = [pytest.mark.slow]\n"
                    "def test_real():\n    run(['python', '-m', 'torch.distributed.run'])\n")
    assert launching_tests(test) == {"test_real": True}
