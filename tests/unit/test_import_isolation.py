"""The import graph: `chord` stays a plain library, every module imports, no cycles.

- every module of `chord` imports in a fresh interpreter without pulling in Ray, verl or vLLM;
- every module of `recipe` imports in a fresh interpreter (verl is installed; vLLM need not be);
- nothing in `chord` imports `recipe`, and the module-level imports of both packages form no
  cycle (read from the source, so a cycle is found even when import order happens to work).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("chord", "recipe")
HEAVY = ("ray", "verl", "vllm")


def module_files() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of our packages."""
    out: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = module_files()


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def module_level_imports(module: str) -> set[str]:
    """Our modules that `module` imports when it is imported (not inside functions)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(node, module, path.name == "__init__.py")
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.add(sub if sub in MODULES else target)
            elif isinstance(node, (ast.If, ast.Try)):  # conditional imports still run at import time
                visit(node.body)
                visit(node.orelse)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(tree.body)
    return {name for name in found if name in MODULES and name != module}


def test_every_module_is_found():
    assert "chord.losses.combined" in MODULES
    assert "recipe.train.actor_loss" in MODULES
    assert len(MODULES) > 50


def test_chord_never_imports_recipe():
    offenders = {
        module: sorted(dep for dep in module_level_imports(module) if dep.startswith("recipe"))
        for module in MODULES
        if module.startswith("chord")
    }
    assert {m: deps for m, deps in offenders.items() if deps} == {}
    # Imports inside functions count too: chord must be usable without recipe.
    for module, path in MODULES.items():
        if module.startswith("chord"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "recipe":
                    pytest.fail(f"{module} imports {node.module}")
                if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "recipe" for a in node.names):
                    pytest.fail(f"{module} imports recipe")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (cycle := dfs(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_find_cycle_detects_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_module_level_import_graph_has_no_cycle():
    graph = {module: module_level_imports(module) for module in MODULES}
    assert find_cycle(graph) is None


def _import_in_fresh_interpreter(modules: list[str]) -> dict:
    code = (
        "import importlib, json, sys\n"
        f"modules = {modules!r}\n"
        "errors, heavy = {}, {}\n"
        "for name in modules:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        errors[name] = f'{type(exc).__name__}: {exc}'\n"
        f"    heavy[name] = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
        "print(json.dumps({'errors': errors, 'heavy': heavy}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO, timeout=600
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_chord_module_imports_without_ray_verl_or_vllm():
    # One interpreter for all of them: if their union pulls in none of these, neither does any one.
    modules = sorted(m for m in MODULES if m.startswith("chord"))
    result = _import_in_fresh_interpreter(modules)
    assert result["errors"] == {}
    assert {m: h for m, h in result["heavy"].items() if h} == {}


def test_every_recipe_module_imports():
    modules = sorted(m for m in MODULES if m.startswith("recipe"))
    result = _import_in_fresh_interpreter(modules)
    assert result["errors"] == {}
