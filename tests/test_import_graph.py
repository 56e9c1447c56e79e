"""The package's import graph: no cycle, and the library never imports the command line."""

from __future__ import annotations

import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "bayesda"


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """``module -> bayesda modules it imports`` (top-level and inside functions alike)."""
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for t in targets:
                if t in modules and t != name and t != "bayesda":
                    deps.add(t)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_library_does_not_import_the_command_line():
    upward = {
        (a, b)
        for a, deps in import_graph().items()
        if a != "bayesda.cli" and not a.startswith("bayesda.cli.")
        for b in deps
        if b == "bayesda.cli" or b.startswith("bayesda.cli.")
    }
    assert not upward


def test_find_cycle_sees_one():
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]


@pytest.mark.parametrize(
    "light", ["bayesda.settings", "bayesda.runtime.xla", "bayesda.runtime.optional"]
)
def test_light_modules_import_nothing_heavy(light):
    assert not import_graph()[light] - {"bayesda.runtime.xla", "bayesda.runtime.optional"}


# The subpackages form layers along the data flow; a module imports only from its own layer or
# the ones below, and nothing imports the command line.
LAYERS: list[tuple[str, ...]] = [
    ("_version", "settings", "runtime"),  # foundations: no weather in them
    ("geo",),  # where things are
    ("data", "obs", "sim"),  # fields, observations, simulated truth
    ("prior",),  # the generative prior
    ("verify", "outputs"),  # scores, verdicts; what users read
    ("inference", "testing"),  # from observations to a posterior
    ("preflight", "preflight", "preflight", "preflight"),  # real observations before the model
    ("workflows", "workflows", "workflows", "workflows"),  # end-to-end jobs
    ("cli", "cli"),  # the command line
]


def _level(module: str) -> int | None:
    """The layer of ``module``: that of the longest entry naming it or a package above it."""
    best = None
    for i, layer in enumerate(LAYERS):
        for entry in layer:
            name = f"bayesda.{entry}"
            if module == name or module.startswith(name + "."):
                if best is None or len(name) > best[0]:
                    best = (len(name), i)
    return None if best is None else best[1]


def test_every_module_has_a_layer():
    assert not [m for m in import_graph() if m != "bayesda" and _level(m) is None]


def test_no_upward_import():
    upward = sorted(
        (a, b)
        for a, deps in import_graph().items()
        if a != "bayesda"
        for b in deps
        if (_level(b) or 0) > (_level(a) or 0)
    )
    assert not upward
