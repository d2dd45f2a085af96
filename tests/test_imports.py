"""The import graph of fedrun/, read from the source (function-level imports too): no cycles,
config a leaf, strategies and stages never reaching transport, collectives only in comm."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

from .conftest import REPO

PKG = REPO / "fedrun"
TRANSPORT = {"fedrun.comm", "torch.distributed"}
COLLECTIVES = {
    "broadcast", "reduce", "all_reduce", "all_gather", "gather", "scatter", "barrier",
    "send", "recv", "isend", "irecv", "reduce_scatter", "all_to_all", "monitored_barrier",
}  # fmt: skip


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PKG.rglob("*.py")}


@cache
def imports_of(module: str) -> frozenset[str]:
    """Every module `module` imports anywhere in its file (fedrun modules resolved to the
    submodule named; `from fedrun import x` is fedrun.x), plus torch.distributed if it is used."""
    tree = ast.parse(MODULES[module].read_text())
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.add(sub if sub in MODULES else base)
    found = set()
    for name in out:
        if name.startswith("torch.distributed"):
            found.add("torch.distributed")
        elif name in MODULES and name != "fedrun":
            found.add(name)
    return frozenset(found - {module})


def reach(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for m in imports_of(todo.pop()):
            if m not in seen:
                seen.add(m)
                if m in MODULES:
                    todo.append(m)
    return seen


def test_the_graph_is_read():
    assert "fedrun.config" in imports_of("fedrun.checks")
    assert "fedrun.registry" in imports_of("fedrun.models")
    assert "torch.distributed" in imports_of("fedrun.comm")
    assert "fedrun.main" in imports_of("fedrun.api")  # a function-level import


def test_no_import_cycles():
    for m in MODULES:
        if m != "fedrun":
            assert m not in reach(m), f"{m} imports itself through {sorted(reach(m))}"


def test_config_is_a_leaf():
    allowed = {"fedrun.errors", "fedrun.seeding"}
    assert reach("fedrun.config") <= allowed, reach("fedrun.config") - allowed


@pytest.mark.parametrize(
    "module", [m for m in MODULES if m.startswith(("fedrun.strategies", "fedrun.stages"))]
)
def test_strategies_and_stages_never_reach_transport(module):
    bad = reach(module) & (TRANSPORT | {m for m in MODULES if m.startswith("fedrun.exchange")})
    assert not bad, f"{module} reaches {sorted(bad)}"


def test_types_strategies_receive_touch_no_process_group():
    for m in ("fedrun.protocol", "fedrun.wire", "fedrun.flat", "fedrun.clientstate"):
        assert not reach(m) & TRANSPORT, m


def test_only_comm_calls_collectives():
    for name, path in MODULES.items():
        if name == "fedrun.comm":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "dist"
                and node.func.attr in COLLECTIVES
            ):
                raise AssertionError(f"{name}:{node.lineno} calls dist.{node.func.attr}")


def test_no_import_tricks():
    for name, path in MODULES.items():
        assert "noqa: E402" not in path.read_text(), name
