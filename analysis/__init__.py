"""The experiments behind bayesda's numbers, one folder per study (see ``analysis/README.md``).

Each study's scripts run from the repository root as ``python -m analysis.<study>.<script>``
and write to ``analysis/<study>/results/``; helpers that several studies share live in
:mod:`analysis.common`.
"""
