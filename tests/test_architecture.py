"""Imports go down the floors of docs/architecture.md, never up or sideways into a recipe.

Every `import lmforge...` and `from lmforge... import` in src/lmforge, at module level or inside a function, is
checked against the floor table below (the longest matching prefix gives a module's floor). A module may import
its own floor or any floor below it, except that a recipe (floor 4) never imports another recipe.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

FLOORS = {
    0: ["lmforge.errors", "lmforge.io", "lmforge.config", "lmforge.quiet"],
    1: ["lmforge.corpora", "lmforge.tokenizer", "lmforge.models", "lmforge.eval.text", "lmforge.eval.tasks",
        "lmforge.train.checkpoint", "lmforge.train.schedules", "lmforge.train.muon", "lmforge.train.optim",
        "lmforge.train.distributed", "lmforge.train.parallel", "lmforge.train.sharded", "lmforge.train.logging", "lmforge.train.trackers", "lmforge.train.guard",
        "lmforge.train.peak", "lmforge.train.compiling", "lmforge.text.wordlists"],
    2: ["lmforge.run", "lmforge.data", "lmforge.text", "lmforge.augment", "lmforge.generate"],
    3: ["lmforge.prepare", "lmforge.eval.lm", "lmforge.eval.generation",
        "lmforge.finetune.backbones", "lmforge.finetune.heads", "lmforge.finetune.lora", "lmforge.finetune.data",
        "lmforge.finetune.task", "lmforge.report", "lmforge.eval.harness"],
    4: ["lmforge.train.trainer", "lmforge.finetune.train", "lmforge.finetune.predict", "lmforge.eval.recipe",
        "lmforge.bakeoff", "lmforge.export", "lmforge.plan"],
    5: ["lmforge.cli", "lmforge.__main__"],
}
RECIPES = 4
PACKAGES = ["lmforge", "lmforge.train", "lmforge.finetune", "lmforge.eval", "lmforge.data", "lmforge.text",
            "lmforge.augment", "lmforge.models", "lmforge.report"]


def floor_of(module: str) -> int | None:
    best, floor = "", None
    for level, prefixes in FLOORS.items():
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, floor = prefix, level
    return floor


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # `from lmforge.finetune import data` imports the submodule lmforge.finetune.data
            out += [(node.lineno, f"{base}.{a.name}" if f"{base}.{a.name}" in _MODULES else base) for a in node.names]
    return [(line, name) for line, name in out if name == "lmforge" or name.startswith("lmforge.")]


_FILES = sorted((SRC / "lmforge").rglob("*.py"))
_MODULES = {module_name(p) for p in _FILES}


def violations() -> list[str]:
    found = []
    for path in _FILES:
        name = module_name(path)
        if name in PACKAGES:  # a package's __init__ only re-exports what is below it
            continue
        mine = floor_of(name)
        if mine is None:
            found.append(f"{name}: not on any floor of the table")
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for line, target in imported(ast.parse(path.read_text(), str(path)), package):
            if target in PACKAGES and target not in _MODULES - set(PACKAGES):
                target_floor = min((floor_of(m) for m in _MODULES if m.startswith(target + ".")
                                    and floor_of(m) is not None), default=None) if target != "lmforge" else 0
            else:
                target_floor = floor_of(target)
            if target_floor is None:
                found.append(f"{path.relative_to(SRC)}:{line}: imports {target}, which is on no floor")
            elif target_floor > mine:
                found.append(f"{path.relative_to(SRC)}:{line}: {name} (floor {mine}) imports {target} "
                             f"(floor {target_floor}): upward")
            elif target_floor == mine == RECIPES and not target.startswith(name):
                found.append(f"{path.relative_to(SRC)}:{line}: recipe {name} imports recipe {target}: sideways")
    return found


def test_imports_go_down_the_floors():
    assert violations() == []


def test_no_import_cycles():
    graph: dict[str, set[str]] = {}
    for path in _FILES:
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = {t for _, t in imported(ast.parse(path.read_text()), package) if t in _MODULES and t != name
                       and t not in PACKAGES}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        for nxt in graph.get(node, ()):
            if nxt in trail:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in done:
                visit(nxt, trail + [nxt])
        done.add(node)

    done: set[str] = set()
    for name in graph:
        if name not in done:
            visit(name, [name])
    assert cycles == []


def test_the_check_sees_an_upward_import(tmp_path):
    tree = ast.parse("from lmforge.cli import app\n")
    assert imported(tree, "lmforge.models") == [(1, "lmforge.cli")]
    assert floor_of("lmforge.cli") > floor_of("lmforge.models.transformer")
    assert floor_of("lmforge.finetune.train") == floor_of("lmforge.train.trainer") == RECIPES
