"""fluxscale.infer.shards: whole shards encoded by fluxscale against zarr's own writes and reads."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec

from fluxscale.infer.shard_kernels import grid_chunk
from fluxscale.infer.shards import ShardWriter, UnsupportedLayout

SHAPE, CHUNK, SHARD = (2, 100, 6, 10), (1, 8, 3, 5), (1, 104, 3, 10)


def _array(path, shuffle="noshuffle", checksum=True):
    from fluxscale.dataset.stores import checksum_codecs

    codecs = [BloscCodec(cname="lz4", clevel=5, shuffle=shuffle)]
    return zarr.create_array(str(path), shape=SHAPE, chunks=CHUNK, shards=SHARD, dtype="float32",
                             fill_value=np.nan, compressors=checksum_codecs(codecs) if checksum else codecs,
                             dimension_names=("ensemble", "time", "lat", "lon"))


def _data():
    rng = np.random.default_rng(3)
    data = rng.normal(size=SHAPE).astype(np.float32)
    data[:, :, 0, :] = np.nan              # an ocean row
    data[0, 16:24, 3:6, 0:5] = np.nan      # one whole inner chunk of NaN: not stored
    data[1, :, 3:6, :] = np.nan            # a whole shard of NaN: no file
    return data


@pytest.mark.parametrize("shuffle, checksum", [("noshuffle", True), ("shuffle", True), ("shuffle", False)])
def test_shards_are_the_bytes_zarr_writes_and_read_back(tmp_path, shuffle, checksum):
    """With the inner chunks' CRC-32C (what fluxscale writes) and without (older cubes)."""
    data = _data()
    _array(tmp_path / "ours.zarr", shuffle, checksum)
    theirs = _array(tmp_path / "theirs.zarr", shuffle, checksum)
    theirs[...] = data
    w = ShardWriter(tmp_path / "ours.zarr")
    padded = np.full((2, 104, 6, 10), np.nan, dtype=np.float32)  # the shard runs past day 100
    padded[:, :100] = data

    for lead in range(2):
        for band in range(2):
            def chunk(c, lead=lead, band=band):
                a = np.ascontiguousarray(padded[lead, c[1] * 8:(c[1] + 1) * 8, band * 3:(band + 1) * 3,
                                                c[3] * 5:(c[3] + 1) * 5])
                return None if np.isnan(a).all() else a
            w.write((lead, 0, band, 0), chunk)

    files = sorted(p.relative_to(tmp_path / "theirs.zarr") for p in (tmp_path / "theirs.zarr").rglob("c/**/*")
                   if p.is_file())
    assert [str(f) for f in files] == ["c/0/0/0/0", "c/0/0/1/0", "c/1/0/0/0"]  # no file for the NaN shard
    for f in files:
        assert (tmp_path / "ours.zarr" / f).read_bytes() == (tmp_path / "theirs.zarr" / f).read_bytes(), f
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "ours.zarr"))[...], data)
    # rewriting a shard as all-NaN removes its file, as zarr does
    w.write((0, 0, 1, 0), lambda c: None)
    assert not (tmp_path / "ours.zarr/c/0/0/1/0").exists()
    assert np.isnan(zarr.open_array(str(tmp_path / "ours.zarr"))[0, :, 3:6]).all()
    if checksum:  # a flipped byte inside an inner chunk is a read error, not a changed value
        f = tmp_path / "ours.zarr/c/0/0/0/0"
        raw = bytearray(f.read_bytes())
        raw[40] ^= 0x01
        f.write_bytes(bytes(raw))
        with pytest.raises(ValueError, match="checksum"):
            zarr.open_array(str(tmp_path / "ours.zarr"))[0, :, 0:3]


def test_grid_chunk_equals_a_numpy_scatter():
    rng = np.random.default_rng(0)
    rows, lon, cells = 3, 20, 25
    flat = rng.choice(rows * lon, size=cells, replace=False)
    li, lj = (flat // lon).astype(np.intp), (flat % lon).astype(np.intp)
    values = rng.normal(size=(30, cells)).astype(np.float32)
    out = np.empty((8, rows, 10), dtype=np.float32)
    for t0, lon0 in [(0, 0), (8, 10), (24, 10)]:  # the last chunk holds 6 days of 8
        t1 = min(t0 + 8, 30)
        want = np.full((8, rows, lon), np.nan, dtype=np.float32)
        want[:t1 - t0, li, lj] = values[t0:t1]
        assert grid_chunk(values, t0, t1, li, lj, lon0, out) == bool(np.isfinite(want[:, :, lon0:lon0 + 10]).any())
        np.testing.assert_array_equal(out, want[:, :, lon0:lon0 + 10])
    values[:] = np.nan
    assert not grid_chunk(values, 0, 8, li, lj, 0, out)


def test_other_layouts_are_refused(tmp_path):
    zarr.create_array(str(tmp_path / "plain.zarr"), shape=(10, 10), chunks=(5, 5), dtype="float32", fill_value=np.nan)
    with pytest.raises(UnsupportedLayout, match="plain.zarr"):
        ShardWriter(tmp_path / "plain.zarr")
    zarr.create_array(str(tmp_path / "f64.zarr"), shape=(10, 10), chunks=(5, 5), shards=(10, 10), dtype="float64",
                      fill_value=np.nan, compressors=[BloscCodec(cname="lz4")])
    with pytest.raises(UnsupportedLayout):
        ShardWriter(tmp_path / "f64.zarr")
