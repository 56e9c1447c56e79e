"""The Python block of the real-observations guide runs as written, on the real METAR hour."""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "guides" / "real-observations.md"


def guide_python_block() -> str:
    match = re.search(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
    assert match, f"{GUIDE} has no python block"
    return match.group(1)


@pytest.mark.slow
def test_guide_python_block_runs(monkeypatch, capsys):
    import numpy as np

    monkeypatch.chdir(ROOT)  # the block names the fixture by its path in the repository
    namespace: dict = {}
    exec(compile(guide_python_block(), str(GUIDE), "exec"), namespace)
    out = capsys.readouterr().out
    assert "QC: " in out and "calibration check" in out, out
    assert re.search(r"-?\d+\.\d degC \+- \d+\.\d K", out), out
    result, obs = namespace["result"], namespace["obs"]
    assert len(obs) > 2500  # the 2,705 usable stations less the few QC flags
    assert result.settings["errors"] == "learned"
    denver = namespace["denver"]
    # 2019-07-01 12 UTC is 6 am in Denver: a July morning, a few to 25 degC
    assert 0.0 < float(denver["tas_mean"]) - 273.15 < 30.0
    assert 0.3 < float(denver["sd"]) < 5.0 and np.isfinite(float(denver["q95"]))
