"""Tests for bayesda.runtime.diskcache and the land-mask results it keeps on disk."""

from __future__ import annotations

import numpy as np
import pytest

from bayesda.geo import landmask
from bayesda.geo.grid import Grid
from bayesda.runtime import diskcache
from bayesda.runtime.diskcache import cached_arrays, entry_path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BAYESDA_CACHE", str(tmp_path))
    monkeypatch.delenv("BAYESDA_DISK_CACHE", raising=False)
    return tmp_path


class Counter:
    def __init__(self, value):
        self.calls = 0
        self.value = value

    def __call__(self):
        self.calls += 1
        return {"a": np.array(self.value, np.float64), "n": np.arange(3)}


def test_second_call_reads_the_entry(cache):
    compute = Counter([1.0, 2.5])
    first = cached_arrays("demo", {"x": 1}, compute)
    second = cached_arrays("demo", {"x": 1}, compute)
    assert compute.calls == 1
    np.testing.assert_array_equal(second["a"], [1.0, 2.5])
    np.testing.assert_array_equal(second["n"], first["n"])
    assert entry_path("demo", {"x": 1}).is_file()
    assert entry_path("demo", {"x": 1}).parent == cache / "demo"


def test_another_key_is_another_entry(cache):
    compute = Counter([1.0])
    cached_arrays("demo", {"x": 1}, compute)
    cached_arrays("demo", {"x": 2}, compute)
    assert compute.calls == 2
    assert entry_path("demo", {"x": 1}) != entry_path("demo", {"x": 2})


@pytest.mark.parametrize(
    "damage",
    ["truncate", "garbage", "empty", "values", "key"],
    ids=["truncated", "garbage", "empty", "altered-values", "other-key"],
)
def test_a_bad_entry_is_recomputed_and_rewritten(cache, damage):
    compute = Counter([3.0, 4.0])
    cached_arrays("demo", {"x": 1}, compute)
    path = entry_path("demo", {"x": 1})
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file")
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "values":  # same layout, other numbers, the stored digest kept
        with np.load(path) as f:
            stored = {k: f[k] for k in f.files}
        stored["a"] = stored["a"] + 1.0
        np.savez(path, **stored)
    else:  # a valid entry of another key copied over this one
        cached_arrays("demo", {"x": 2}, Counter([9.0]))
        path.write_bytes(entry_path("demo", {"x": 2}).read_bytes())
    got = cached_arrays("demo", {"x": 1}, compute)
    assert compute.calls == 2
    np.testing.assert_array_equal(got["a"], [3.0, 4.0])
    # rewritten: the next process reads it without computing
    again = cached_arrays("demo", {"x": 1}, compute)
    assert compute.calls == 2
    np.testing.assert_array_equal(again["a"], [3.0, 4.0])


def test_off_and_unwritable(cache, monkeypatch, tmp_path):
    compute = Counter([1.0])
    monkeypatch.setenv("BAYESDA_DISK_CACHE", "off")
    assert entry_path("demo", {"x": 1}) is None
    cached_arrays("demo", {"x": 1}, compute)
    cached_arrays("demo", {"x": 1}, compute)
    assert compute.calls == 2 and not any(cache.iterdir())
    monkeypatch.delenv("BAYESDA_DISK_CACHE")
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    monkeypatch.setenv("BAYESDA_CACHE", str(blocker))  # a file where the directory should be
    got = cached_arrays("demo", {"x": 1}, compute)
    np.testing.assert_array_equal(got["a"], [1.0])
    assert compute.calls == 3


def test_bad_keys_and_arrays(cache):
    with pytest.raises(TypeError, match="not plain JSON"):
        cached_arrays("demo", {"x": object()}, Counter([1.0]))
    with pytest.raises(TypeError, match="cannot cache array 'o'"):
        cached_arrays("demo", {"x": 1}, lambda: {"o": np.array([None])})
    with pytest.raises(ValueError, match="kind="):
        entry_path("a/b", {"x": 1})


def test_land_fraction_from_disk_equals_computed(cache, monkeypatch):
    grid = Grid(lat=np.linspace(31.0, 51.0, 5), lon=np.linspace(-121.0, -89.0, 9))
    direct = landmask._land_fraction(np.asarray(grid.lat), np.asarray(grid.lon), 5)
    landmask._land_fraction_cached.cache_clear()
    first = landmask.land_fraction(grid)
    np.testing.assert_array_equal(first, direct)
    assert not first.flags.writeable

    # a new process: the in-process cache is empty; the mask must not be needed
    landmask._land_fraction_cached.cache_clear()

    def no_mask(*args, **kwargs):
        raise AssertionError("the land mask was loaded although the disk cache holds the grid")

    monkeypatch.setattr(landmask, "is_land", no_mask)
    again = landmask.land_fraction(grid)
    np.testing.assert_array_equal(again, direct)
    assert not again.flags.writeable
    landmask._land_fraction_cached.cache_clear()


def test_land_fraction_key_names_the_source_version(cache, monkeypatch):
    grid = Grid(lat=np.linspace(31.0, 51.0, 5), lon=np.linspace(-121.0, -89.0, 9))
    landmask._land_fraction_cached.cache_clear()
    landmask.land_fraction(grid)
    entries = list((cache / "land_fraction").iterdir())
    monkeypatch.setattr(landmask, "_source_version", lambda: "99.0")
    landmask._land_fraction_cached.cache_clear()
    landmask.land_fraction(grid)
    assert len(list((cache / "land_fraction").iterdir())) == len(entries) + 1
    landmask._land_fraction_cached.cache_clear()


def test_coastlines_from_disk_equal_computed(cache, monkeypatch):
    box = ((62.0, 68.0), (-26.0, -12.0))
    direct = landmask._coastlines(*box[0], *box[1], 0.1)
    landmask._coastlines_cached.cache_clear()
    landmask.coastlines(*box, resolution=0.1)
    landmask._coastlines_cached.cache_clear()
    monkeypatch.setattr(landmask, "is_land", lambda *a: pytest.fail("mask loaded"))
    again = landmask.coastlines(*box, resolution=0.1)
    assert len(again) == len(direct)
    for a, b in zip(again, direct, strict=True):
        np.testing.assert_array_equal(a, b)
    landmask._coastlines_cached.cache_clear()


def test_module_names():
    assert set(diskcache.__all__) == {"cache_root", "cached_arrays", "entry_path"}
