"""Models found by name (bayesda.prior.checkpoint.find_model): the shipped models from any
directory, ``$BAYESDA_MODELS`` and the user's model directory, a path that exists first, and
the hashes checked whichever way the model was found."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest

from bayesda.prior.checkpoint import (
    MODELS_ENV,
    CheckpointError,
    available_models,
    find_model,
    load_model,
    model_search_path,
)
from bayesda.testing import save_tiny_model

REPO_MODELS = pathlib.Path(__file__).resolve().parents[2] / "models"
SHIPPED = ("hs-t21-tas", "ncep-air")


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working directory with no models/ in it, and no user models or $BAYESDA_MODELS."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv(MODELS_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    return cwd


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_models_found_by_name_from_any_directory(elsewhere, name):
    found = find_model(name)
    assert found.resolve() == (REPO_MODELS / name).resolve()
    assert available_models()[name].resolve() == found.resolve()


def test_load_model_by_name_equals_load_model_by_path(elsewhere):
    by_name = load_model("ncep-air")
    by_path = load_model(REPO_MODELS / "ncep-air")
    assert by_name.grid == by_path.grid and by_name.latent_dim == by_path.latent_dim
    z = np.zeros((1, by_name.latent_dim), np.float32)
    np.testing.assert_array_equal(np.asarray(by_name.decode(z)), np.asarray(by_path.decode(z)))


def test_an_existing_path_wins_over_a_name(elsewhere):
    save_tiny_model(elsewhere / "ncep-air")
    assert find_model("ncep-air") == pathlib.Path("ncep-air")
    assert load_model("ncep-air").latent_dim == 3  # the tiny model, not the shipped one


def test_models_env_is_searched_first_and_hashes_are_checked(elsewhere, tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    save_tiny_model(second / "ncep-air")
    save_tiny_model(first / "tiny")
    monkeypatch.setenv(MODELS_ENV, os.pathsep.join([str(first), str(second)]))
    assert model_search_path()[:2] == [first, second]
    assert find_model("tiny") == first / "tiny"
    assert find_model("ncep-air") == second / "ncep-air"  # shadows the shipped one
    assert load_model("tiny").latent_dim == 3
    params = first / "tiny" / "params.npz"
    params.write_bytes(params.read_bytes()[:-8])
    with pytest.raises(CheckpointError, match="truncated or altered"):
        load_model("tiny")


def test_user_model_directory_is_searched(elsewhere, tmp_path):
    user = tmp_path / "xdg-data" / "bayesda" / "models"
    save_tiny_model(user / "mine")
    assert user in model_search_path()
    assert find_model("mine") == user / "mine"
    assert "mine" in available_models()


def test_unknown_name_names_the_directories_and_the_models(elsewhere):
    with pytest.raises(CheckpointError, match=r"model 'no-such' not found.*ncep-air"):
        load_model("no-such")


def test_missing_path_to_a_shipped_model_points_at_its_name(elsewhere):
    """What `bayesda demo` said outside the repository before models were found by name."""
    with pytest.raises(
        CheckpointError, match=r"'models/ncep-air' does not exist.*load_model\('ncep-air'\)"
    ):
        load_model("models/ncep-air")


def test_a_directory_without_model_json_is_not_a_model(elsewhere, tmp_path, monkeypatch):
    (tmp_path / "env" / "empty").mkdir(parents=True)
    monkeypatch.setenv(MODELS_ENV, str(tmp_path / "env"))
    assert "empty" not in available_models()
    with pytest.raises(CheckpointError, match="not found"):
        find_model("empty")
