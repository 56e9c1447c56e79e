"""The README's Python example runs as written (on the tiny synthetic prior by default)."""

from __future__ import annotations

import pathlib
import re

import pytest

from bayesda.testing import make_linear_prior, make_obs

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def readme_python_example() -> str:
    """The first ```python block under the "## Python API" heading of README.md."""
    text = README.read_text()
    section = text.split("## Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md has no python block under '## Python API'"
    return match.group(1)


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    import bayesda
    from bayesda import settings

    prior = make_linear_prior()
    make_obs(prior.grid, 10, seed=4).to_csv(tmp_path / "obs.csv", index=False)
    monkeypatch.chdir(tmp_path)
    # The tiny model instead of models/ncep-air, and short chains instead of DEMO.
    monkeypatch.setattr(bayesda, "load_model", lambda path: prior, raising=False)
    monkeypatch.setattr(settings, "DEMO", settings.QUICK)
    namespace: dict = {}
    exec(compile(readme_python_example(), str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert re.match(r"(PASS|WARN|FAIL) mean posterior SD \d+\.\d\d K", out), out
    assert (tmp_path / "maps.png").stat().st_size > 0
    result = namespace["result"]
    assert result.idata is namespace["idata"] and result.settings["errors"] == "learned"
    assert namespace["ds"]["sd"].shape == prior.grid.shape


@pytest.mark.slow
def test_readme_example_runs_with_the_shipped_model(tmp_path, monkeypatch, ncep):
    """The example exactly as written: the shipped model, pseudo-observations of a test day."""
    import bayesda

    root = README.parent
    prior = bayesda.load_model(root / "models" / "ncep-air")
    truth = prior.climatology.to_anomaly(ncep["tas"].sel(time="2014-01-21T12:00"))
    obs = bayesda.pseudo_obs(truth, 60, network="station", sigma=0.5, seed=0)
    obs.to_csv(tmp_path / "obs.csv", index=False)
    (tmp_path / "models").symlink_to(root / "models")
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_python_example(), str(README), "exec"), {})
    assert (tmp_path / "maps.png").is_file()
