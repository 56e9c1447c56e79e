"""MkDocs hook: the package layers and one line per module, read from the source tree.

A line ``<!-- bayesda-modules -->`` in a page becomes one table per layer of
``tests/test_import_graph.py``'s ``LAYERS`` (the layer test that the import graph obeys),
with every module of the layer's packages and the first paragraph of its docstring. A new
module appears by itself; a module without a docstring is a build warning (an error under
``--strict``).
"""

from __future__ import annotations

import ast
import logging
import pathlib

log = logging.getLogger("mkdocs.hooks.architecture")
_MARK = "<!-- bayesda-modules -->"
_NAMES = {
    0: "Foundations: no weather in them",
    1: "Where things are",
    2: "Fields, observations, simulated truth",
    3: "The generative prior",
    4: "Scores, verdicts and what users read",
    5: "From observations to a posterior",
    6: "Real observations before the model",
    7: "End-to-end jobs",
    8: "The command line",
}


def _layers(root: pathlib.Path) -> list[list[str]]:
    tree = ast.parse((root / "tests" / "test_import_graph.py").read_text())
    for node in tree.body:
        target = getattr(node, "target", None) or (getattr(node, "targets", None) or [None])[0]
        if isinstance(target, ast.Name) and target.id == "LAYERS":
            return [list(dict.fromkeys(layer)) for layer in ast.literal_eval(node.value)]
    raise ValueError("tests/test_import_graph.py has no LAYERS")


def _summary(path: pathlib.Path) -> str | None:
    doc = ast.get_docstring(ast.parse(path.read_text()))
    if not doc:
        return None
    return " ".join(doc.split("\n\n")[0].split()).replace("|", "\\|")


def _modules(root: pathlib.Path, entry: str) -> list[pathlib.Path]:
    package = root / "bayesda" / entry
    if package.is_dir():
        return sorted(package.glob("*.py"), key=lambda p: (p.name != "__init__.py", p.name))
    return [p for p in [package.with_suffix(".py")] if p.is_file()]


def _table(root: pathlib.Path, page: str) -> str:
    out = []
    for level, layer in enumerate(_layers(root)):
        out += [f"### {level + 1}. {_NAMES.get(level, 'Layer')}", ""]
        out += ["| module | what it owns |", "| --- | --- |"]
        for entry in layer:
            for path in _modules(root, entry):
                parts = path.relative_to(root).with_suffix("").parts
                name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
                summary = _summary(path)
                if summary is None:
                    log.warning("%s: module %s has no docstring", page, name)
                    summary = ""
                linked = name.startswith("bayesda.cli") or name == "bayesda._version"
                cell = f"`{name}`" if linked else f"[`{name}`][{name}]"
                out.append(f"| {cell} | {summary} |")
        out.append("")
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if _MARK not in markdown:
        return markdown
    root = pathlib.Path(config.config_file_path).resolve().parent
    return markdown.replace(_MARK, _table(root, page.file.src_path))
