"""Griffe extension: the docstrings' Sphinx roles as cross-references in the API pages.

bayesda's docstrings are Google style with Sphinx roles (``:func:`load_model```,
``:class:`~bayesda.geo.grid.Grid```), which Markdown would show as literal text. This turns
each role into an optional mkdocs-autorefs reference: a link where the object has a page,
plain code where it has none (a private helper, another library), never a build warning.
A name without a dot is looked up in the module of the docstring that names it.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|obj|exc|const):`(~?)([^`<>]+)`")


def _reference(module: str, match: re.Match) -> str:
    short, target = match.group(1) == "~", match.group(2).strip()
    identifier = target if target.startswith("bayesda") else f"{module}.{target}"
    title = target.rsplit(".", 1)[-1] if short else target
    return f'<autoref identifier="{identifier}" optional><code>{title}</code></autoref>'


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.is_alias or obj.docstring is None:
            return
        module = obj.module.path if not obj.is_module else obj.path
        obj.docstring.value = _ROLE.sub(lambda m: _reference(module, m), obj.docstring.value)
