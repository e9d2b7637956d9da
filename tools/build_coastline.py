#!/usr/bin/env python
"""Build the coastline outline that fluxscale's maps draw (build-time tool).

Writes ``fluxscale/data/coastline_0.5deg.npz`` (``np.savez_compressed``) from the shipped
land fraction ``fluxscale/data/land_regions_0.5deg.npz`` (GLOBE 1 km land mask on the
0.5° grid, see ``tools/build_masks.py``): the 0.5 contour of the land fraction, i.e. the
coastline as the model grid sees it, with no download at build or run time:

* ``lonlat`` int16 (n, 2): the vertices of every polyline in hundredths of a degree
  (longitude east, latitude north);
* ``starts`` int32 (m + 1,): polyline k is ``lonlat[starts[k]:starts[k + 1]]``;
* ``source``: what it was made from.

Polylines of fewer than ``--min-points`` vertices (islands of one or two cells) are
dropped. Run from the repository root::

    python tools/build_coastline.py [--min-points 6]

:func:`fluxscale.evaluate.figures.coastline` reads the file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MASKS = ROOT / "fluxscale" / "data" / "land_regions_0.5deg.npz"
OUT = ROOT / "fluxscale" / "data" / "coastline_0.5deg.npz"


def coastline_polylines(land_fraction: np.ndarray, lat: np.ndarray, lon: np.ndarray, min_points: int = 6
                        ) -> list[np.ndarray]:
    """The 0.5 contour lines of ``land_fraction`` (lat, lon) as ``(k, 2)`` lon/lat arrays."""
    import contourpy

    # pad one column on each side (wrapping in longitude) so that coasts crossing the
    # dateline close, and one row of ocean at the poles' edges
    lf = np.concatenate([land_fraction[:, -1:], land_fraction, land_fraction[:, :1]], axis=1)
    lons = np.concatenate([[lon[0] - (lon[1] - lon[0])], lon, [lon[-1] + (lon[1] - lon[0])]])
    gen = contourpy.contour_generator(lons, lat, lf, line_type=contourpy.LineType.Separate)
    out = []
    for line in gen.lines(0.5):
        line = np.asarray(line)
        line[:, 0] = np.clip(line[:, 0], -180.0, 180.0)
        if len(line) >= min_points:
            out.append(line)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--min-points", type=int, default=6)
    args = ap.parse_args(argv)
    with np.load(MASKS, allow_pickle=False) as f:
        lf, lat, lon = f["land_fraction"].astype(np.float64), f["lat"], f["lon"]
    lines = coastline_polylines(lf, lat, lon, args.min_points)
    lonlat = np.round(np.concatenate(lines) * 100).astype(np.int16)
    starts = np.concatenate([[0], np.cumsum([len(x) for x in lines])]).astype(np.int32)
    np.savez_compressed(OUT, lonlat=lonlat, starts=starts,
                        source=np.array(f"0.5 contour of the land fraction of {MASKS.name} (GLOBE 1 km land mask "
                                        f"on the 0.5° grid), polylines of >= {args.min_points} vertices, "
                                        f"tools/build_coastline.py"))
    print(f"{OUT}: {len(lines)} polylines, {len(lonlat)} vertices, {OUT.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
