"""DTW distances against tslearn, dtaidistance and closed forms; tiled Zarr path against in-memory."""

import os

import numpy as np
import pytest
import zarr
from dtaidistance import dtw as dtai
from hypothesis import given, settings
from hypothesis import strategies as st
from tslearn.metrics import cdist_dtw, sakoe_chiba_mask
from tslearn.metrics import dtw as ts_dtw

from fluxscale.bridges.dtw import (NonFiniteSeriesError, count_band_cells, cross_distance, distance_matrix,
                           distance_matrix_tiled, dtw_distance, tile_plan)
from fluxscale.errors import ConfigError, StoreError

RTOL = {"float32": 1e-5, "float64": 1e-11}


def _ts(x, y, r):
    """tslearn's distance; radius r (None: no band)."""
    if r is None:
        return ts_dtw(x, y)
    return ts_dtw(x, y, global_constraint="sakoe_chiba", sakoe_chiba_radius=r)


def _ts_cdist(A, B, r):
    if r is None:
        return cdist_dtw(A, B)
    return cdist_dtw(A, B, global_constraint="sakoe_chiba", sakoe_chiba_radius=r)


def _dtai_window(r):
    # dtaidistance counts |i - j| < window and reads window=0 as "no band": radius r is window r+1.
    return None if r is None else r + 1


def _nee_like(n, length=204, seed=0):
    """Monthly NEE-like series: a seasonal cycle of amplitude 1–5 plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    return rng.uniform(1, 5, (n, 1)) * np.sin(2 * np.pi * t / 12 + phase) + 0.3 * rng.normal(size=(n, length))


def _close(a, b, dtype):
    np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=1e-6 if dtype == "float32" else 1e-12)


# --------------------------------------------------------------------------- pairs

def test_dtaidistance_window_convention():
    """The peer's conventions that the tests below rely on: window r+1 is radius r, 0 is no band."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=30), rng.normal(size=30)
    for r in (0, 1, 3):
        assert dtai.distance(x, y, window=r + 1, use_c=True) == pytest.approx(_ts(x, y, r), rel=1e-12)
        assert dtai.distance(x, y, window=r, use_c=True) != pytest.approx(_ts(x, y, r), rel=1e-6)
    assert dtai.distance(x, y, window=0, use_c=True) == pytest.approx(_ts(x, y, None), rel=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("lengths", [(30, 30), (17, 30), (30, 17), (1, 6), (9, 1)])
@pytest.mark.parametrize("r", [None, 0, 1, 4, 40])
def test_dtw_distance_matches_peers(dtype, lengths, r):
    rng = np.random.default_rng(sum(lengths))
    x, y = rng.normal(size=lengths[0]), rng.normal(size=lengths[1])
    got = dtw_distance(x, y, r, dtype=dtype)
    _close(got, _ts(x, y, r), dtype)
    _close(got, dtai.distance(x, y, window=_dtai_window(r), use_c=True), dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_window_zero_is_euclidean_and_wide_window_is_unbanded(dtype):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=50), rng.normal(size=50)
    _close(dtw_distance(x, y, 0, dtype=dtype), np.sqrt(((x - y) ** 2).sum()), dtype)
    for r in (49, 50, 10**6):
        _close(dtw_distance(x, y, r, dtype=dtype), dtw_distance(x, y, None, dtype=dtype), dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_adversarial_pairs(dtype):
    rng = np.random.default_rng(2)
    x = rng.normal(size=40)
    # identical: 0 exactly, with or without a band
    assert dtw_distance(x, x, None, dtype=dtype) == 0.0
    assert dtw_distance(x, x, 0, dtype=dtype) == 0.0
    # constants: every cell costs (a-b)², the shortest path has max(n, m) cells
    assert dtw_distance(np.full(20, 2.0), np.full(33, -1.0), None, dtype=dtype) == pytest.approx(3 * np.sqrt(33), rel=1e-6)
    # a copy shifted by 3 steps: free inside a band of 3 up to the ends, not with a narrower band
    y = np.concatenate([x[:1].repeat(3), x[:-3]])
    for r in (None, 2, 3):
        _close(dtw_distance(x, y, r, dtype=dtype), _ts(x, y, r), dtype)
    # a large common offset (float32 keeps 1e-5 thanks to centring)
    big = 1000.0 + rng.normal(size=(2, 60))
    _close(dtw_distance(big[0], big[1], 5, dtype=dtype), _ts(big[0], big[1], 5), dtype)
    # spikes
    s = np.zeros(30)
    s[7] = 50.0
    _close(dtw_distance(s, np.roll(s, 4), 2, dtype=dtype), _ts(s, np.roll(s, 4), 2), dtype)


@pytest.mark.parametrize("n,m,r", [(10, 10, 0), (10, 10, 3), (204, 204, 20), (12, 20, 2), (20, 12, 0), (7, 7, 50)])
def test_count_band_cells_matches_tslearn_mask(n, m, r):
    assert count_band_cells(n, m, r) == int(sakoe_chiba_mask(n, m, radius=r).sum())
    assert count_band_cells(n, m, None) == n * m


# --------------------------------------------------------------------------- matrices

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("r", [None, 0, 3])
@pytest.mark.parametrize("length", [25, 90])  # unbanded 90: 64-byte lane blocks, else 128-byte ones
def test_distance_matrix_matches_peers(dtype, r, length):
    X = np.random.default_rng(3).normal(size=(37, length))  # 37: partial last lane blocks of 8, 16, 32
    D = distance_matrix(X, r, dtype=dtype)
    assert D.dtype == np.float64 and D.shape == (37, 37)
    assert np.array_equal(D, D.T) and not np.diag(D).any()
    _close(D, _ts_cdist(X, X, r), dtype)
    # dtaidistance fills the upper triangle (the lower one and the diagonal vary by version)
    up = np.triu(np.asarray(dtai.distance_matrix_fast(X, window=_dtai_window(r))), 1)
    _close(D, up + up.T, dtype)


@pytest.mark.parametrize("window", [20, None])
def test_float32_accuracy_on_nee_like_series(window):
    X = _nee_like(24)
    _close(distance_matrix(X, window), _ts_cdist(X, X, window), "float32")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_distance_matches_tslearn(dtype):
    rng = np.random.default_rng(4)
    A, B, B2 = rng.normal(size=(5, 20)), rng.normal(size=(19, 20)), rng.normal(size=(9, 26))
    _close(cross_distance(A, B, 3, dtype=dtype), _ts_cdist(A, B, 3), dtype)
    _close(cross_distance(A, B2, 2, dtype=dtype), _ts_cdist(A, B2, 2), dtype)  # unequal lengths
    X = np.concatenate([A, B])
    _close(cross_distance(X, X, 3, dtype=dtype), distance_matrix(X, 3, dtype=dtype), dtype)


def test_single_thread_equals_threads():
    X = _nee_like(40, 48)
    assert np.array_equal(distance_matrix(X, 5, n_threads=1), distance_matrix(X, 5, n_threads=2))


def test_non_finite_values_name_the_series():
    X = np.random.default_rng(0).normal(size=(6, 12))
    X[4, 7] = np.nan
    with pytest.raises(NonFiniteSeriesError, match=r"series 4 .* position 7") as e:
        distance_matrix(X)
    assert isinstance(e.value, ValueError) and (e.value.series, e.value.position) == (4, 7)
    with pytest.raises(ValueError, match="series y .* position 2"):
        dtw_distance(np.zeros(5), [0.0, 1.0, np.inf])
    with pytest.raises(NonFiniteSeriesError, match=r"series B\[4\] .* position 7"):
        cross_distance(X[:2], X)
    with pytest.raises(NonFiniteSeriesError, match="series 4"):
        distance_matrix_tiled(X, "unused.zarr")


def test_bad_arguments():
    x = np.zeros((3, 5))
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigError, match="window"):
            distance_matrix(x, bad)
    with pytest.raises(ConfigError, match="dtype"):
        distance_matrix(x, dtype="float16")
    with pytest.raises(ConfigError, match="2-D"):
        distance_matrix(np.zeros(5))
    with pytest.raises(ConfigError, match="1-D"):
        dtw_distance(np.zeros((2, 3)), np.zeros(3))


# --------------------------------------------------------------------------- tiles

@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 120), tile=st.integers(1, 50))
def test_tile_plan_covers_the_matrix_once_aligned(n, tile):
    plan = tile_plan(n, tile)
    cover = np.zeros((n, n), int)
    for i0, i1, j0, j1 in plan:
        assert i0 % tile == 0 and j0 % tile == 0 and j0 >= i0          # aligned chunks, upper triangle
        assert (i1, j1) == (min(n, i0 + tile), min(n, j0 + tile))       # whole chunks: memory ≤ tile²
        cover[i0:i1, j0:j1] += 1
        if (i0, j0) != (j0, i0):
            cover[j0:j1, i0:i1] += 1                                    # the mirrored chunk
    assert (cover == 1).all()
    assert len(plan) == (-(-n // tile)) * (-(-n // tile) + 1) // 2


def _files(path):
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns for d, _, fs in os.walk(path) for f in fs}


def test_tiled_threaded_equals_in_memory_and_is_reused(tmp_path):
    X = _nee_like(45, 30)
    path = tmp_path / "dtw.zarr"
    arr = distance_matrix_tiled(X, path, window=4, tile=16)
    assert arr.shape == (45, 45) and arr.chunks == (16, 16) and arr.dtype == np.float32
    assert arr.attrs["fluxscale_complete"] and arr.attrs["window"] == 4 and arr.attrs["n"] == 45
    np.testing.assert_array_equal(arr[:], distance_matrix(X, 4).astype(np.float32))
    assert sorted(os.listdir(tmp_path)) == ["dtw.zarr"]  # no .partial left

    before = _files(path)
    again = distance_matrix_tiled(X, path, window=4, tile=16)  # complete, same inputs: not recomputed
    assert _files(path) == before
    np.testing.assert_array_equal(again[:], arr[:])

    X2 = X.copy()
    X2[3, 5] += 1.0
    changed = distance_matrix_tiled(X2, path, window=4, tile=16)  # different series: recomputed
    assert changed.attrs["x_sha256"] != arr.attrs["x_sha256"]
    np.testing.assert_array_equal(changed[:], distance_matrix(X2, 4).astype(np.float32))
    other = distance_matrix_tiled(X2, path, window=None, tile=16, dtype="float64")  # other window/dtype too
    np.testing.assert_allclose(other[:], distance_matrix(X2, None, dtype="float64"), rtol=1e-6)


def test_tiled_leftovers_and_foreign_paths(tmp_path):
    X = _nee_like(10, 12)
    (tmp_path / "m.zarr.partial").mkdir()
    (tmp_path / "m.zarr.partial" / "junk").write_text("interrupted run")
    arr = distance_matrix_tiled(X, tmp_path / "m.zarr", tile=4)
    np.testing.assert_array_equal(arr[:], distance_matrix(X).astype(np.float32))
    assert not (tmp_path / "m.zarr.partial").exists()
    (tmp_path / "mine").mkdir()
    with pytest.raises(StoreError, match="not a DTW distance matrix"):
        distance_matrix_tiled(X, tmp_path / "mine")
    zarr.create_array(store=str(tmp_path / "other.zarr"), shape=(2,), dtype="f4")
    with pytest.raises(StoreError):
        distance_matrix_tiled(X, tmp_path / "other.zarr")


def test_tiled_on_local_cluster_equals_in_memory(tmp_path):
    from distributed import Client, LocalCluster

    X = _nee_like(40, 24, seed=7)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster, Client(cluster) as client:
        arr = distance_matrix_tiled(X, tmp_path / "d.zarr", window=3, tile=16, client=client)
    np.testing.assert_array_equal(arr[:], distance_matrix(X, 3).astype(np.float32))
    assert arr.attrs["fluxscale_complete"]
