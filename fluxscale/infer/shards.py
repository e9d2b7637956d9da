"""Whole-shard writes to a sharded Zarr v3 array, encoded here rather than by zarr.

Global inference writes every variable of its cube one *whole shard* at a time (a block owns
its shards, see :mod:`fluxscale.infer.block`). Through ``xarray.to_zarr(region=...)`` that
write cost ~1.4 s of an 18.7 s block at 0.5° (``python tools/infer_block_cpu.py DIR 61``),
~8 % of the block, though lz4 alone compresses the same bytes in ~0.15 s: xarray's encoding
copy of the NaN-padded gridded band, zarr's per-chunk asyncio tasks and ``all_equal`` scans,
and the copy of every compressed chunk into one buffer (``Buffer.combine``). Here each inner
chunk is gridded from the block's compact ``(days, cells)`` values into one reused,
cache-sized buffer (numba: :func:`fluxscale.infer.shard_kernels.grid_chunk`), compressed with
the array's own Blosc settings and written with the shard index in one file write — the
bytes zarr itself would write (checked in ``tests/infer/test_shards.py`` against zarr's own
shard files, and read back with zarr).

Only the layout fluxscale's cube templates use is supported — ``sharding_indexed`` with inner
codecs ``bytes`` (little endian) + ``blosc`` (+ ``crc32c``, what fluxscale writes since issue
20) and index codecs ``bytes`` + ``crc32c`` at the end, default chunk keys with ``/``; :class:`ShardWriter` refuses any other with
:class:`UnsupportedLayout`, and the caller falls back to zarr.
"""

from __future__ import annotations

import json
import os
import uuid
from itertools import product
from pathlib import Path

import numpy as np

from fluxscale.infer.shard_kernels import grid_chunk  # noqa: F401  (re-exported: the old path fluxscale.shards)

__all__ = ["ShardWriter", "UnsupportedLayout", "grid_chunk"]

_EMPTY = np.uint64(2**64 - 1)
_SHUFFLE = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


class UnsupportedLayout(ValueError):
    """The array's codecs are not the layout :class:`ShardWriter` encodes."""


class ShardWriter:
    """Writes whole shards of one array of a local Zarr v3 store.

    Parameters
    ----------
    array : path
        The array's directory (holding its ``zarr.json``).

    Raises
    ------
    UnsupportedLayout
        When the array is not sharded float32 with ``bytes`` + ``blosc`` (+ ``crc32c``)
        inside, ``bytes`` + ``crc32c`` index at the end and NaN fill.
    """

    def __init__(self, array: str | Path):
        import numcodecs

        self.path = Path(array)
        meta = json.loads((self.path / "zarr.json").read_text())
        try:
            (shard_codec,) = meta["codecs"]
            cfg = shard_codec["configuration"]
            inner = [c["name"] for c in cfg["codecs"]]
            index = [c["name"] for c in cfg["index_codecs"]]
            ok = (shard_codec["name"] == "sharding_indexed" and inner in (["bytes", "blosc"], ["bytes", "blosc", "crc32c"])
                  and cfg["codecs"][0].get("configuration", {}).get("endian", "little") == "little"
                  and index == ["bytes", "crc32c"] and cfg.get("index_location", "end") == "end"
                  and cfg["index_codecs"][0].get("configuration", {}).get("endian", "little") == "little"
                  and meta["data_type"] == "float32" and str(meta["fill_value"]) == "NaN"
                  and meta["chunk_key_encoding"]["name"] == "default"
                  and meta["chunk_key_encoding"].get("configuration", {}).get("separator", "/") == "/"
                  and not meta.get("storage_transformers"))
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise UnsupportedLayout(f"{self.path}: not a sharded float32 array with bytes+blosc chunks "
                                    f"and a crc32c index at the end")
        self.shard = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
        self.chunk = tuple(cfg["chunk_shape"])
        if any(s % c for s, c in zip(self.shard, self.chunk)):
            raise UnsupportedLayout(f"{self.path}: shard {self.shard} is not a whole number of chunks {self.chunk}")
        self.per_shard = tuple(s // c for s, c in zip(self.shard, self.chunk))
        self._crc = inner[-1] == "crc32c"  # each inner chunk ends with the CRC-32C of its encoded bytes
        self._chunk_size = int(np.prod(self.chunk))
        b = cfg["codecs"][1]["configuration"]
        # numcodecs' Blosc with the settings zarr's BloscCodec gives it (zarr/codecs/blosc.py)
        self._blosc = numcodecs.Blosc.from_config({"cname": b["cname"], "clevel": b["clevel"],
                                                   "shuffle": _SHUFFLE[b["shuffle"]],
                                                   "blocksize": b.get("blocksize", 0),
                                                   "typesize": b.get("typesize", 4)})
        try:  # zarr writes a shard's chunks in Morton order; so do we (the same bytes)
            from zarr.core.indexing import morton_order_iter
            self._order = list(morton_order_iter(self.per_shard))
        except ImportError:  # pragma: no cover - older/newer zarr: C order is as valid
            self._order = list(product(*(range(n) for n in self.per_shard)))

    def write(self, shard: tuple[int, ...], chunk) -> int:
        """Encode and write shard ``shard`` (its index in the shard grid).

        ``chunk(coords)`` returns inner chunk ``coords`` (its index inside the shard) as a
        C-contiguous float32 array of the inner chunk's shape, or None when it holds only
        NaN (not stored). The shard is written to a temporary file and renamed into place
        (as zarr's ``LocalStore`` does); a shard with no stored chunk is removed. Returns the
        bytes written.
        """
        import google_crc32c

        index = np.full((*self.per_shard, 2), _EMPTY, dtype="<u8")
        parts, offset = [], 0
        for coords in self._order:
            arr = chunk(coords)
            if arr is None:
                continue
            if arr.shape != self.chunk[-arr.ndim:] or arr.size != self._chunk_size or arr.dtype != np.float32 or not arr.flags.c_contiguous:
                raise ValueError(f"{self.path}: chunk {coords} must be C-contiguous float32 {self.chunk}, "
                                 f"got {arr.dtype} {arr.shape}")
            enc = self._blosc.encode(arr.view(np.uint8).reshape(-1))
            if self._crc:
                enc = bytes(enc) + np.uint32(google_crc32c.value(enc)).astype("<u4").tobytes()
            parts.append(enc)
            index[coords] = (offset, len(enc))
            offset += len(enc)
        key = self.path / "c" / Path(*(str(i) for i in shard))
        if not parts:
            key.unlink(missing_ok=True)
            return 0
        raw = index.tobytes()
        parts.append(raw)
        parts.append(np.uint32(google_crc32c.value(raw)).astype("<u4").tobytes())
        key.parent.mkdir(parents=True, exist_ok=True)
        tmp = key.with_suffix(f".{uuid.uuid4().hex}.partial")  # as zarr's LocalStore writes
        try:
            with open(tmp, "wb") as f:
                f.writelines(parts)
            os.replace(tmp, key)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return offset + len(raw) + 4
