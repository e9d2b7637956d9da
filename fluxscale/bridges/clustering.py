"""Spectral clustering of a region's pixels on DTW affinities, and stratified sampling of
candidate pixels from the clusters (paper §3.3.1).

The affinity between two pixels with DTW distance d (see :mod:`fluxscale.bridges.dtw`) is the
Gaussian kernel

    a = exp(−d² / (2 σ²)),   σ = the median DTW distance between the region's pixels,

so that the affinities spread over (0, 1) whatever the units and the amplitude of the
region's NEE: with a fixed σ a dry region (small distances) would be one cluster and a
productive one (large distances) all singletons. Two paths:

* exact: the normalised spectral clustering of Ng, Jordan & Weiss (2002) on the full
  n × n affinity (regions whose DTW matrix fits, see ``BridgeConfig.max_exact_cells``):
  top-k eigenvectors of D^-1/2 A D^-1/2 (scipy), rows normalised to unit length,
  scikit-learn's ``KMeans``. This is the formulation dask-ml's Nyström path approximates,
  so the two paths differ only by the approximation. (scikit-learn's
  ``SpectralClustering`` uses Laplacian-eigenmap embeddings without the row
  normalisation; on the twin's regions its clusters agree with these at an adjusted
  Rand index of only 0.2–0.6, the regions' NEE varying as smooth gradients rather than
  separated groups.)
* Nyström: dask-ml's ``SpectralClustering``, which computes only ``n_components`` rows
  of the affinity (a random sample of pixels against all), here with the DTW kernel; σ
  is then the median distance within the sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["dtw_affinity", "spectral_clusters", "nystrom_clusters", "stratified_sample", "allocate"]


def dtw_affinity(distance: np.ndarray, scale: float | None = None) -> tuple[np.ndarray, float]:
    """Gaussian affinity of a DTW distance matrix; returns ``(affinity, σ)``.

    ``scale`` (σ, same units as the distances) defaults to the median off-diagonal
    distance; a region of identical series (σ = 0) gets affinity 1 everywhere.
    """
    d = np.asarray(distance, dtype=np.float64)
    if scale is None:
        off = d[~np.eye(d.shape[0], dtype=bool)] if d.shape[0] == d.shape[1] else d.ravel()
        scale = float(np.median(off)) if off.size else 0.0
    if scale <= 0:
        return np.ones_like(d), 0.0
    return np.exp(-(d * d) / (2.0 * scale * scale)), scale


def spectral_clusters(distance: np.ndarray, n_clusters: int, seed: int) -> tuple[np.ndarray, float]:
    """Exact spectral clustering of an n × n DTW distance matrix.

    Returns ``(labels (n,) int, σ)``; labels are renumbered 0… by first appearance so
    that they do not depend on the k-means initialisation order. With ``n ≤
    n_clusters`` every pixel is its own cluster.
    """
    n = distance.shape[0]
    if n <= n_clusters:
        return np.arange(n), 0.0
    affinity, scale = dtw_affinity(distance)
    if scale == 0.0:
        return np.zeros(n, dtype=np.int64), 0.0
    return _renumber(njw_labels(affinity, n_clusters, seed)), scale


def njw_labels(affinity: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """Ng–Jordan–Weiss spectral clustering of a dense symmetric affinity matrix."""
    from scipy.linalg import eigh
    from sklearn.cluster import KMeans

    n = affinity.shape[0]
    dinv = 1.0 / np.sqrt(affinity.sum(axis=1))
    m = affinity * dinv[:, None] * dinv[None, :]
    _, vecs = eigh(m, subset_by_index=[n - n_clusters, n - 1])
    u = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-300)
    return KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(u)


@dataclass(frozen=True)
class DTWKernel:
    """A picklable DTW Gaussian kernel for dask-ml's ``SpectralClustering(affinity=...)``.

    dask-ml calls ``kernel(X_keep, **params)`` for the sample block and
    ``kernel(X_keep, X_rest, **params)`` for the sample against the rest (``X_rest`` a
    Dask array, mapped block by block so only one block of rows is in memory).
    """

    window: int | None
    scale: float

    def __call__(self, A, B=None, **_ignored):
        import dask.array as da

        A = np.asarray(A)
        if isinstance(B, da.Array):
            B = B.rechunk({1: -1})
            out = B.map_blocks(_kernel_block, keep=A, window=self.window, scale=self.scale, dtype=np.float64,
                               chunks=(B.chunks[0], (A.shape[0],)))
            return out.T
        return _kernel_block(A, keep=A if B is None else np.asarray(B), window=self.window, scale=self.scale)


def _kernel_block(block: np.ndarray, *, keep: np.ndarray, window: int | None, scale: float) -> np.ndarray:
    """Affinities of the rows of ``block`` (rows) against the rows of ``keep`` (columns)."""
    from fluxscale.bridges.dtw import cross_distance

    return dtw_affinity(cross_distance(block, keep, window=window), scale)[0]


def nystrom_clusters(series: np.ndarray, n_clusters: int, seed: int, *, window: int | None,
                     n_components: int = 300, chunk: int = 1024) -> tuple[np.ndarray, float]:
    """Spectral clustering by the Nyström approximation (dask-ml) with the DTW kernel.

    Parameters
    ----------
    series : (n, length) array
        The pixels' series (one row each).
    n_components : int
        Pixels sampled for the exact block of the affinity (the rest is approximated from
        the n × n_components block). Memory: n × n_components × 8 bytes.

    Returns
    -------
    (labels (n,), σ)
        σ: the median DTW distance within the sample.
    """
    from dask_ml.cluster import SpectralClustering

    from fluxscale.bridges.dtw import distance_matrix

    n = series.shape[0]
    n_components = min(n_components, n - 1)
    rng = np.random.default_rng([seed, 0x5EC7])
    sample = series[np.sort(rng.choice(n, size=min(n_components, n), replace=False))]
    _, scale = dtw_affinity(distance_matrix(sample, window=window))
    if scale == 0.0:
        return np.zeros(n, dtype=np.int64), 0.0
    model = SpectralClustering(n_clusters=n_clusters, affinity=DTWKernel(window, scale), n_components=n_components,
                               random_state=seed, assign_labels="sklearn-kmeans", n_init=10)
    import warnings

    with warnings.catch_warnings():
        # dask-ml hands its Dask embedding to scikit-learn's KMeans, which probes it with
        # numpy.may_share_memory; harmless, the embedding is n × n_clusters
        warnings.filterwarnings("ignore", message="The `numpy.may_share_memory` function")
        model.fit(_as_dask(np.ascontiguousarray(series), chunk))
    return _renumber(np.asarray(model.labels_)), scale


def _as_dask(x: np.ndarray, chunk: int):
    """``x`` as a Dask array of row blocks; under a distributed client the blocks are
    submitted first as tasks of their own instead of being embedded in the graph (a
    10 000-pixel region is 16 MB). Not ``client.scatter``: scattered data dies with its
    worker, a task's result the scheduler recomputes (issue 19)."""
    import dask.array as da

    try:
        from distributed import get_client

        client = get_client()
    except (ImportError, ValueError):
        return da.from_array(x, chunks=(chunk, -1))
    blocks = [x[i:i + chunk] for i in range(0, x.shape[0], chunk)]
    from fluxscale.parallel import shared_argument

    futures = [client.submit(shared_argument, b, pure=False) for b in blocks]
    return da.concatenate([da.from_delayed(f, shape=b.shape, dtype=b.dtype) for f, b in zip(futures, blocks)])


def _renumber(labels: np.ndarray) -> np.ndarray:
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(np.argsort(first))
    return order[np.searchsorted(np.unique(labels), labels)].astype(np.int64)


def allocate(sizes: np.ndarray, n: int) -> np.ndarray:
    """Split ``n`` draws over clusters proportionally to their ``sizes`` (largest
    remainder), never more than a cluster holds; ``n ≥ sizes.sum()`` takes all."""
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    if n >= total:
        return sizes.copy()
    quota = n * sizes / total
    take = np.floor(quota).astype(np.int64)
    rest = n - int(take.sum())
    order = np.lexsort((np.arange(sizes.size), -(quota - take)))  # ties: lower cluster id first
    for k in order[:rest]:
        take[k] += 1
    return np.minimum(take, sizes)


def stratified_sample(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` pixels drawn without replacement, each cluster contributing in
    proportion to its size (:func:`allocate`); sorted."""
    labels = np.asarray(labels)
    ids, sizes = np.unique(labels, return_counts=True)
    take = allocate(sizes, n)
    picked = [rng.choice(np.flatnonzero(labels == k), size=t, replace=False) for k, t in zip(ids, take) if t]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)
