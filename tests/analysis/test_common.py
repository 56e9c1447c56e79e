"""The shared helpers of analysis/: recorded commands, atomic writes, the plain convolution."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.common import io
from analysis.common.decoder import plain_conv_valid


def test_command_is_the_module_invocation_with_its_arguments():
    assert io.command("analysis.skill.benchmark_skill", ["--quick"]) == (
        "python -m analysis.skill.benchmark_skill --quick"
    )
    assert io.command("analysis.x.y", []) == "python -m analysis.x.y"


def test_results_dir_is_the_study_folder():
    assert io.results_dir("skill") == io.ROOT / "analysis" / "skill" / "results"
    assert (io.ROOT / "analysis" / "skill" / "benchmark_skill.py").is_file()


def test_atomic_write_leaves_the_old_file_on_error_and_appends_rows(tmp_path):
    path = tmp_path / "sub" / "a.json"
    io.append_rows(path, [{"a": 1}])
    io.append_rows(path, [{"b": 2}])
    assert json.loads(path.read_text()) == [{"a": 1}, {"b": 2}]

    def fail(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        io.atomic_write(path, fail)
    assert json.loads(path.read_text()) == [{"a": 1}, {"b": 2}]
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]


def test_plain_convolution_matches_the_library_one():
    import jax

    from bayesda.prior.vae import conv_valid

    kx, kk = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (2, 7, 9, 3))
    k = jax.random.normal(kk, (3, 3, 3, 4))
    np.testing.assert_allclose(plain_conv_valid(x, k), conv_valid(x, k), rtol=1e-5, atol=1e-5)
    g1 = jax.grad(lambda x: (plain_conv_valid(x, k) ** 2).sum())(x)
    g2 = jax.grad(lambda x: (conv_valid(x, k) ** 2).sum())(x)
    np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-4)
