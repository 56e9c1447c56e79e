"""MkDocs hook: the repository files the pages name must exist.

The pages name files outside docs/ (scripts and results under analysis/, models/, tests/,
the package's modules) as code spans such as ``analysis/README.md``: a relative link there
would leave the site and break a strict build. This hook checks, at build time, that every
such path exists in the repository, so that a moved or deleted file fails ``make docs``
instead of leaving a stale pointer; when ``repo_url`` is set in mkdocs.yml the spans also
become links to the files in the repository.

It also serves repository files the site shows (the demo's figure under analysis/) without a
copy in docs/: ``extra.repo_files`` in mkdocs.yml maps a site path to a repository file.
"""

from __future__ import annotations

import logging
import pathlib
import re

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.repo_files")

# a code span holding one repository path: a known top-level folder, then no spaces
_SPAN = re.compile(r"`((?:analysis|bayesda|models|tests|\.ci)/[^`\s]*)`")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


def _exists(root: pathlib.Path, path: str) -> bool:
    if any(c in path for c in "*?["):
        return any(root.glob(path))
    return (root / path).exists()


def on_files(files, config):
    root = pathlib.Path(config.config_file_path).resolve().parent
    for dest, src in (config.extra.get("repo_files") or {}).items():
        if not (root / src).is_file():
            log.warning("extra.repo_files: %r is not in the repository", src)
            continue
        files.append(File.generated(config, dest, abs_src_path=str(root / src)))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    root = pathlib.Path(config.config_file_path).resolve().parent
    repo_url = (config.repo_url or "").rstrip("/")
    prose = _FENCE.sub("", markdown)
    for path in sorted(set(_SPAN.findall(prose))):
        if not _exists(root, path):
            log.warning("%s names %r, which is not in the repository", page.file.src_path, path)
    if not repo_url:
        return markdown

    def link(match: re.Match) -> str:
        path = match.group(1)
        if any(c in path for c in "*?["):
            return match.group(0)
        return f"[`{path}`]({repo_url}/blob/main/{path})"

    parts = re.split(r"(^```.*?^```)", markdown, flags=re.M | re.S)
    return "".join(p if p.startswith("```") else _SPAN.sub(link, p) for p in parts)
