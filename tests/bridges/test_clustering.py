import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score
from tslearn.metrics import cdist_dtw

from fluxscale.bridges.clustering import allocate, dtw_affinity, spectral_clusters, stratified_sample


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=12), st.integers(0, 700))
def test_allocate_is_proportional_and_feasible(sizes, n):
    sizes = np.array(sizes)
    take = allocate(sizes, n)
    assert take.sum() == min(n, sizes.sum())
    assert np.all(take <= sizes) and np.all(take >= 0)
    if n < sizes.sum():
        quota = n * sizes / sizes.sum()
        assert np.all(np.abs(take - quota) < 1 + 1e-9)


def test_stratified_sample_is_seeded_and_proportional():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    a = stratified_sample(labels, 10, np.random.default_rng(7))
    b = stratified_sample(labels, 10, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert np.unique(a).size == 10
    np.testing.assert_array_equal(np.bincount(labels[a]), [5, 3, 2])


def _groups(seed=0, per=30, length=48):
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    shapes = [np.sin(2 * np.pi * t / 12), 2.5 * np.sin(2 * np.pi * t / 12 + 1.0), 0.02 * t - 0.5]
    x = np.concatenate([s + rng.normal(0, 0.15, (per, length)) for s in shapes])
    return x, np.repeat(np.arange(3), per)


def test_spectral_clusters_recover_groups_from_dtw():
    x, truth = _groups()
    d = cdist_dtw(x, global_constraint="sakoe_chiba", sakoe_chiba_radius=3)
    labels, scale = spectral_clusters(d, 3, seed=0)
    assert adjusted_rand_score(truth, labels) == pytest.approx(1.0)
    assert scale == pytest.approx(np.median(d[~np.eye(len(d), dtype=bool)]))
    aff, _ = dtw_affinity(d)
    np.testing.assert_allclose(aff, np.exp(-d**2 / (2 * scale**2)))


def test_degenerate_regions():
    d = np.zeros((5, 5))
    labels, scale = spectral_clusters(d, 3, seed=0)
    assert scale == 0 and np.all(labels == 0)
    labels, _ = spectral_clusters(np.ones((2, 2)) - np.eye(2), 3, seed=0)
    np.testing.assert_array_equal(labels, [0, 1])


def test_nystrom_agrees_with_exact_on_a_twin_region(tiny_twin, tmp_path):
    """The Nyström (dask-ml) path against the exact one on a region where both run."""
    import shutil

    from fluxscale.bridges.build import bridge_inputs
    from fluxscale.bridges.clustering import nystrom_clusters
    from fluxscale.bridges.dtw import distance_matrix
    from fluxscale.bridges.integrals import compute_integrals

    root = tmp_path / "data"
    shutil.copytree(tiny_twin, root)
    compute_integrals(root)
    grid, field, _ = bridge_inputs(root)
    reg = grid.region.values[grid.cell_ilat.values, grid.cell_ilon.values]
    x = field[:, reg == 4].T  # BRA, 181 cells at 2°
    exact, s_exact = spectral_clusters(distance_matrix(x, window=6), 6, seed=0)
    approx, s_approx = nystrom_clusters(x, 6, seed=0, window=6, n_components=120)
    assert adjusted_rand_score(exact, approx) > 0.5
    assert s_approx == pytest.approx(s_exact, rel=0.25)  # sample median vs full median


def test_nystrom_under_a_distributed_client_equals_the_threaded_result():
    """Under a Client the row blocks go to the cluster as tasks of their own (recomputed if a
    worker dies; issue 19), and the labels and scale equal those without a cluster."""
    from distributed import Client, LocalCluster

    from fluxscale.bridges.clustering import nystrom_clusters

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(300, 48)) + k * 3 for k in range(3)])
    a, sa = nystrom_clusters(x, 3, seed=0, window=6, n_components=60)
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0") as c, Client(c):
        b, sb = nystrom_clusters(x, 3, seed=0, window=6, n_components=60)
    np.testing.assert_array_equal(a, b)
    assert sa == sb
