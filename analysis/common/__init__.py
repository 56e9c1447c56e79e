"""Helpers shared by the studies under ``analysis/`` (no study imports another study's script).

* :mod:`analysis.common.io`: paths, atomic writes, recorded commands, JSON ledgers;
* :mod:`analysis.common.ncep`: held-out NCEP times with station-like observations, the
  reanalysis defaults and command line;
* :mod:`analysis.common.skill`: networks, methods, scores and figures of the skill benchmark;
* :mod:`analysis.common.linear`: closed-form Gaussian posteriors of a linearised decoder;
* :mod:`analysis.common.osse`: the simulated-weather (OSSE) stores, split and export file;
* :mod:`analysis.common.decoder`: timing the decoder's value-and-gradient.
"""
