"""The package's import arrows run one way, and no module imports itself back through others (issue 26).

Every module under hs_rl/ (and rewards/, installed as hs_rl.rewards) is parsed with `ast`; every import of an
hs_rl module counts, those inside functions included (they run too, just later), except under
`if TYPE_CHECKING:`. Layers, lowest first; a module may import its own layer or a lower one:

    base -> hs_rl.data -> hs_rl.omni -> hs_rl.rewards -> hs_rl.grpo / hs_rl.eval -> entry points -> hs_rl.tools
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# top-level modules of hs_rl by layer; a package's submodules share its layer
BASE = {"hs_rl", "hs_rl.errors", "hs_rl.atomic_files", "hs_rl.choices", "hs_rl.progress", "hs_rl.stage_log",
        "hs_rl.logs"}
LAYERS: list[tuple[str, set[str]]] = [
    ("base", BASE),
    ("data", {"hs_rl.data"}),
    ("omni", {"hs_rl.omni"}),
    ("rewards", {"hs_rl.rewards"}),
    ("grpo/eval", {"hs_rl.grpo", "hs_rl.eval"}),
    ("entry points", {"hs_rl.train", "hs_rl.pipeline", "hs_rl.preflight", "hs_rl.status", "hs_rl.cli",
                      "hs_rl.commands", "hs_rl.plots", "hs_rl.model_card"}),
    ("tools", {"hs_rl.tools"}),
]


def layer_of(module: str) -> int | None:
    """The layer index of a module: its own entry, else its top-level package's (hs_rl.data.media -> data)."""
    for index, (_, names) in enumerate(LAYERS):
        if module in names:
            return index
    parts = module.split(".")
    for index, (_, names) in enumerate(LAYERS):
        if ".".join(parts[:2]) in names and ".".join(parts[:2]) not in BASE:
            return index
    return None


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (rewards/ as hs_rl.rewards)."""
    found: dict[str, Path] = {}
    for top, name in ((ROOT / "hs_rl", "hs_rl"), (ROOT / "rewards", "hs_rl.rewards")):
        for path in sorted(top.rglob("*.py")):
            parts = list(path.relative_to(top).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([name, *parts])] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(module: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported hs_rl module, line) for every import in the file, outside `if TYPE_CHECKING:` blocks."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names if alias.name.split(".")[0] == "hs_rl")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] == "hs_rl":
                for alias in node.names:  # `from hs_rl.data import media` imports the module hs_rl.data.media
                    target = f"{source}.{alias.name}"
                    found.append((target if target in known else source, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return found


def import_graph() -> tuple[dict[str, Path], dict[str, list[tuple[str, int]]]]:
    found = modules()
    return found, {name: imports_of(name, path, set(found)) for name, path in found.items()}


def test_every_module_has_a_layer():
    unplaced = [name for name in modules() if layer_of(name) is None]
    assert not unplaced, f"modules outside every layer (add them to tests/test_layers.py's LAYERS): {unplaced}"


def test_imports_run_down_the_layers():
    found, graph = import_graph()
    upward = []
    for name, targets in graph.items():
        own = layer_of(name)
        for target, line in targets:
            theirs = layer_of(target)
            if own is not None and theirs is not None and theirs > own:
                upward.append(f"{found[name].relative_to(ROOT)}:{line}: {name} ({LAYERS[own][0]}) imports "
                              f"{target} ({LAYERS[theirs][0]})")
    assert not upward, "imports that climb a layer:\n" + "\n".join(upward)


def test_no_import_cycle():
    found, graph = import_graph()
    edges = {name: sorted({t for t, _ in targets if t in graph and t != name}) for name, targets in graph.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in edges[node]:
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            walk(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)
