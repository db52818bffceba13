"""The package's shape: layers import only downwards, no import cycles, Ray only in the orchestration layer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "harness"

# what each layer may import (besides itself); the README's architecture section says the same
ALLOWED = {
    "core": set(),
    "ranking": {"core"},
    "data": {"core"},
    "models": {"core", "data"},
    "tasks": {"core", "data", "models"},
    "methods": {"core", "ranking", "data", "models", "tasks"},
    "train": {"core", "ranking", "data", "models", "tasks", "methods"},
    "results": {"core", "ranking"},
    "study": {"core", "ranking", "data", "models", "tasks", "methods", "train", "results"},
    "cli": {"core", "ranking", "data", "models", "tasks", "methods", "train", "results", "study"},
    "leaderboard": {"core", "ranking", "results"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, name: str) -> set[str]:
    """Every module named by an import statement of the file, function-level imports included."""
    tree = ast.parse(path.read_text(), str(path))
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            stem = (".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))
                    if node.level else node.module or "")
            found.add(stem)
            found.update(f"{stem}.{a.name}" for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        deps = set()
        for d in _imports(path, name):
            while d and d not in modules:
                d = d.rpartition(".")[0]
            if d and d != name and d.startswith("harness"):
                deps.add(d)
        graph[name] = deps
    return graph


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "root"


def test_every_module_belongs_to_a_layer():
    stray = [m for m in _modules() if _layer(m) not in ALLOWED and m != "harness"]
    assert not stray, f"modules outside the layers: {stray}"


def test_layers_import_only_downwards():
    wrong = []
    for module, deps in _graph().items():
        layer = _layer(module)
        if layer not in ALLOWED:
            continue
        for d in deps:
            other = _layer(d)
            if other not in (layer, "root") and other not in ALLOWED[layer]:
                wrong.append(f"{module} -> {d}")
    assert not wrong, "imports against the layering: " + "; ".join(sorted(wrong))


def test_no_import_cycles():
    graph = {m: {d for d in deps if not (PACKAGE.parent / (d.replace(".", "/") + "/__init__.py")).exists()}
             for m, deps in _graph().items()}  # a package's __init__ runs first anyway; edges into it are not cycles
    cycles, state, stack = [], {}, []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                cycles.append(" -> ".join(stack[stack.index(m):] + [m]))
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert not cycles, cycles


def test_ray_is_imported_only_by_the_study_layer():
    users = sorted(m for m, p in _modules().items()
                   if any(i == "ray" or i.startswith("ray.") for i in _imports(p, m)) and _layer(m) != "study")
    assert not users, f"Ray imported outside harness/study: {users}"


def test_data_models_methods_training_and_results_load_without_ray():
    code = ("import sys; import harness.data, harness.models.weights, harness.methods, harness.tasks.classification, "
            "harness.train.loop, harness.train.artifacts, harness.results.leaderboard, harness.results.store; "
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
