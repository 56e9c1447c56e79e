"""The observation-error model the recorded results were measured with."""

from __future__ import annotations

from bayesda.settings import ModelOptions

STATED = ModelOptions(errors="stated")
"""The stated-error model: the stated observation errors and the prior's own representation
error taken as given (:class:`bayesda.settings.ModelOptions`). Every result under
``analysis/`` that predates the learned-error default was measured with it; the scripts pass
it explicitly so that a rerun computes what the recorded result computed."""
