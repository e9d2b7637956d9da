"""Plant functional types (issue 22): the twin's PFT map and the towers' IGBP classes, the
ingest reader's majority regridding, and the figures drawn from them (Figs. 9, A1, B3, B4,
C2), each against an independent numpy computation."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from fluxscale.config import EvalConfig, InferConfig
from fluxscale.dataset.grid import make_grid
from fluxscale.ingest.pft import read_pft
from fluxscale.dataset.schema import IGBP_CLASSES, NO_PFT
from fluxscale.dataset.stores import open_store, open_stores, store_path
from fluxscale.twin.climate import cell_climate
from fluxscale.twin.vegetation import NEIGHBOURS, classify_pft, pft_variables

NAME = {i: a for i, a, _ in IGBP_CLASSES}
ID = {a: i for i, a, _ in IGBP_CLASSES}


def _cell_pft(root) -> np.ndarray:
    g = open_store(store_path(root, "grid"), "grid")
    return g.pft.values[g.cell_ilat.values, g.cell_ilon.values]


# --- the twin's map and towers ---------------------------------------------------------------

def test_twin_pft_map_is_deterministic_land_only_and_plausible(tiny_twin):
    s = open_stores(tiny_twin)
    g = p = s["grid"]
    assert p.pft.dtype == np.int8 and [str(n) for n in p.pft_name.values] == [a for _, a, _ in IGBP_CLASSES]
    land = g.land.values
    np.testing.assert_array_equal(p.pft.values == NO_PFT, ~land)  # every land cell has a class, nothing else
    cells = p.pft.values[g.cell_ilat.values, g.cell_ilon.values]
    assert cells.min() >= 1 and cells.max() <= 17
    # a pure function of the seed and the cells: the stored map is the in-memory one, a rerun the same
    lat, lon = g.cell_lat.values, g.cell_lon.values
    np.testing.assert_array_equal(cells, classify_pft(0, lat, lon))
    np.testing.assert_array_equal(pft_variables(0, g.load()).pft.values, p.pft.values)
    assert (classify_pft(1, lat, lon) != cells).mean() > 0.02  # another seed, another map
    # plausible composition, bands taken from the twin's own climate
    c = cell_climate(0, lat, lon)
    counts = lambda m: pd.Series([NAME[int(k)] for k in cells[m]]).value_counts(normalize=True)  # noqa: E731
    wet_tropics = (np.abs(lat) < 15) & (c["wet"] >= 0.6) & (c["t_mean"] >= 20)
    assert wet_tropics.sum() > 50
    wt = counts(wet_tropics)
    assert wt.index[0] == "EBF" and wt["EBF"] > 0.6
    share = lambda m, k: float(np.mean(cells[m] == ID[k]))  # noqa: E731
    assert share(wet_tropics, "EBF") > 5 * share(~wet_tropics, "EBF")
    assert share(np.abs(lat) > 40, "EBF") < 0.01  # no rain forest at high latitudes
    boreal = (lat > 50) & (lat < 70) & (c["wet"] >= 0.3) & (c["t_mean"] < 0)
    forest = counts(boreal)
    assert forest.index[0] in ("ENF", "DNF")  # the boreal forest is needleleaf
    deserts = c["wet"] < 0.1
    assert counts(deserts).index[0] == "BSV"
    crops = np.abs(lat[cells == ID["CRO"]])
    assert crops.size > 0 and crops.min() >= 10 and crops.max() <= 55
    all_ = counts(np.ones(cells.size, bool))
    assert set(all_.index) <= set(NAME.values()) - {"URB", "SNO", "WAT"} and 0 < all_.get("WET", 0) < 0.02
    assert all_.max() < 0.3 and len(all_) >= 10  # no class dominates the world


def test_towers_igbp_is_their_cells_class_mostly(tiny_twin):
    s = open_stores(tiny_twin)
    st = s["sites"]
    cell_class = np.array([NAME[int(k)] for k in _cell_pft(tiny_twin)[st.cell.values]])
    igbp = np.array([str(v) for v in st.igbp.values])
    same = igbp == cell_class
    assert 0.75 <= same.mean() < 1.0  # 10 % drawn as a neighbouring class (the footprint is not the cell)
    for own, got in zip(cell_class[~same], igbp[~same]):
        assert got in NEIGHBOURS[own]
    assert st.igbp.attrs["long_name"] == "IGBP vegetation class of the tower"


def _drop_pft(root) -> None:
    """Make ``root`` an old directory: a grid without the PFT map, towers without igbp."""
    import zarr

    for store, names in (("grid", ("pft", "pft_class", "pft_name", "pft_long_name")), ("sites", ("igbp",))):
        for n in names:
            shutil.rmtree(store_path(root, store) / n)
        with warnings.catch_warnings():  # zarr: consolidated metadata is not in the v3 spec yet
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(str(store_path(root, store)))


def test_stores_without_pft_still_open(tiny_twin, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_twin, root)
    _drop_pft(root)
    s = open_stores(root, deep=True)
    assert "pft" not in s["grid"] and "igbp" not in s["sites"]


# --- the ingest reader ------------------------------------------------------------------------

def _numpy_majority(classes: np.ndarray, src_lat: np.ndarray, src_lon: np.ndarray, grid: xr.Dataset) -> np.ndarray:
    """By hand: for each model cell, the most frequent class (1–17; ties: lowest) of the source
    pixels whose centres lie inside it; off land -1."""
    res = float(grid.attrs["resolution_deg"])
    lon = (src_lon + 180.0) % 360.0 - 180.0
    out = np.full(grid.land.shape, -1, dtype=np.int8)
    for i, la in enumerate(grid.lat.values):
        rows = (src_lat >= la - res / 2) & (src_lat < la + res / 2)
        for j, lo in enumerate(grid.lon.values):
            if not grid.land.values[i, j]:
                continue
            cols = (lon >= lo - res / 2) & (lon < lo + res / 2)
            v = classes[np.ix_(rows, cols)].ravel()
            v = v[(v >= 1) & (v <= 17)]
            if v.size:
                out[i, j] = np.bincount(v.astype(int), minlength=18)[1:].argmax() + 1
    return out


def test_ingest_reader_majority_equals_numpy(tmp_path):
    grid = make_grid(10.0)
    rng = np.random.default_rng(3)
    # a 2.5° source (16 pixels per cell), latitude descending, longitude 0…360, fill values
    lat = 90 - 1.25 - 2.5 * np.arange(72)
    lon = 1.25 + 2.5 * np.arange(144)
    classes = rng.choice([1, 2, 4, 5, 10, 12, 16], size=(72, 144)).astype(np.int16)
    blocks = rng.integers(1, 17, size=(18, 36))  # a dominant class per 10° cell, so majorities are not ties only
    dom = np.kron(blocks, np.ones((4, 4), int))[::-1]  # rows follow the descending latitude
    dom = np.roll(dom, 72, axis=1)  # columns follow 0…360
    classes = np.where(rng.random((72, 144)) < 0.45, dom, classes).astype(np.int16)
    classes[rng.random((72, 144)) < 0.05] = 255
    xr.Dataset({"LC_Type1": (("latitude", "longitude"), classes), "other": (("latitude", "longitude"), classes * 0.5)},
               coords={"latitude": lat, "longitude": lon}).to_netcdf(tmp_path / "lc.nc")
    got = read_pft(tmp_path / "lc.nc", grid)
    want = _numpy_majority(classes, lat, lon, grid)
    np.testing.assert_array_equal(got.pft.values, want)
    assert (want[grid.land.values] > 0).all() and len(np.unique(want[grid.land.values])) > 5
    # class names in a Zarr store (ascending latitude, −180…180) give the same map
    names = np.array([NAME.get(int(k), "fill") for k in classes.ravel()], dtype=object).reshape(classes.shape)
    asc = xr.Dataset({"igbp": (("lat", "lon"), names[::-1])},
                     coords={"lat": lat[::-1], "lon": (lon + 180) % 360 - 180})
    asc = asc.sortby("lon")
    asc.to_zarr(tmp_path / "names.zarr", zarr_format=3, consolidated=False)
    np.testing.assert_array_equal(read_pft(tmp_path / "names.zarr", grid).pft.values, want)
    # CF flags: ids 0…16 whose meanings are the class names
    flags = xr.Dataset({"lc": (("lat", "lon"), np.where(classes == 255, 99, classes - 1).astype(np.int16),
                               {"flag_values": np.arange(17), "flag_meanings": " ".join(
                                   n.replace(" ", "_") for _, _, n in IGBP_CLASSES)})},
                       coords={"lat": lat, "lon": lon})
    flags.to_netcdf(tmp_path / "flags.nc")
    np.testing.assert_array_equal(read_pft(tmp_path / "flags.nc", grid).pft.values, want)
    # a source coarser than the grid: each cell takes the source pixel over its centre
    g5 = make_grid(5.0)
    c_lat, c_lon = -90 + 10 * (np.arange(18) + 0.5), -180 + 10 * (np.arange(36) + 0.5)
    coarse = rng.integers(1, 18, size=(18, 36))
    xr.Dataset({"pft": (("lat", "lon"), coarse)}, coords={"lat": c_lat, "lon": c_lon}).to_netcdf(tmp_path / "c.nc")
    want = np.full(g5.land.shape, -1)
    for i, la in enumerate(g5.lat.values):
        for j, lo in enumerate(g5.lon.values):
            if g5.land.values[i, j]:
                want[i, j] = coarse[np.argmin(np.abs(c_lat - la)), np.argmin(np.abs(c_lon - lo))]
    np.testing.assert_array_equal(read_pft(tmp_path / "c.nc", g5).pft.values, want)


def test_ingest_writes_pft_store_from_a_users_map(tiny_twin, tmp_path):
    """``fluxscale ingest`` with ``pft = FILE``: the twin's own map at twice the resolution
    (each 2° cell as four 1° pixels) comes back as the twin's map; the twin's own files carry
    its map at the grid's resolution (``pft.nc``); without a ``pft`` file, no map."""
    from fluxscale.config import load_ingest_config
    from fluxscale.ingest import ingest
    from fluxscale.twin.files import export_files

    toml = export_files(tiny_twin, tmp_path / "files")
    p = open_store(store_path(tiny_twin, "grid"), "grid")
    fine = np.kron(p.pft.values, np.ones((2, 2), dtype=np.int8))
    fine = np.where(fine < 0, 17, fine)  # water off land: not a land cell of the grid anyway
    xr.Dataset({"LC_Type1": (("lat", "lon"), fine)},
               coords={"lat": -89.5 + np.arange(180.0), "lon": -179.5 + np.arange(360.0)}).to_netcdf(tmp_path / "lc.nc")
    out = tmp_path / "stores"
    ingest(load_ingest_config(toml, out=str(out), pft=str(tmp_path / "lc.nc")))
    g = open_store(store_path(out, "grid"), "grid")
    np.testing.assert_array_equal(g.pft.values, p.pft.values)
    assert [str(n) for n in g.pft_name.values] == [a for _, a, _ in IGBP_CLASSES]
    assert load_ingest_config(toml).pft == "pft.nc"  # the twin's files hold its map
    ingest(load_ingest_config(toml, out=str(out)))
    np.testing.assert_array_equal(open_store(store_path(out, "grid"), "grid").pft.values, p.pft.values)
    ingest(load_ingest_config(toml, out=str(out), pft=None))
    assert "pft" not in open_store(store_path(out, "grid"), "grid")  # the earlier map is not this dataset's


# --- the figures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reported(tiny_models, tmp_path_factory):
    from fluxscale.infer.stage import infer
    from fluxscale.evaluate.report import evaluate

    root = tmp_path_factory.mktemp("pft_report") / "data"
    shutil.copytree(tiny_models, root)
    infer(root, InferConfig(), show_progress=False)
    rep = evaluate(root, EvalConfig(out=str(root / "report"), maps=False))
    return root, rep


def test_figB3_B4_composition_is_a_count_over_the_bridge_pixels(reported):
    import matplotlib.image as mpimg

    root, rep = reported
    out = root / "report"
    br = open_store(store_path(root, "bridges"), "bridges")
    names = np.array([NAME.get(int(k), "none") for k in _cell_pft(root)], dtype=object)
    pix = br.pixel_cell.values.astype(int)
    b3 = pd.read_csv(out / "figB3_pft_composition.csv").set_index("pft")
    for c in set(names):
        assert b3.loc[c, "bridge_pixels"] == np.sum(names[pix] == c), c
        assert b3.loc[c, "land_cells"] == np.sum(names == c), c
        assert b3.loc[c, "bridge_fraction"] == pytest.approx(np.mean(names[pix] == c))
    assert b3.bridge_pixels.sum() == pix.size and b3.land_cells.sum() == names.size
    # per region: the pixels grouped by the bridges' own pixel_region
    b4 = pd.read_csv(out / "figB4_pft_by_region.csv")
    regions = [str(r) for r in br.region.values]
    for k, reg in enumerate(regions):
        mine = names[pix[br.pixel_region.values == k]]
        sub = b4[b4.region == reg].set_index("pft")
        for c in set(names):
            assert sub.loc[c, "bridge_pixels"] == np.sum(mine == c), (reg, c)
        assert sub.bridge_pixels.sum() == int(br.n_pixels.values[k]), reg
    g = open_store(store_path(root, "grid"), "grid")
    a1 = pd.read_csv(out / "figA1_regions.csv")
    np.testing.assert_array_equal(a1.land_cells.values, np.bincount(g.region.values[g.land.values], minlength=18))
    assert list(a1.abbrev) == regions
    for name in ("figA1", "figB3", "figB4", "figC2", "fig9"):
        img = mpimg.imread(rep.figures[name])
        assert img.shape[0] > 300 and img[..., :3].std() > 0.05, name
    html = (out / "report.html").read_text()
    import html as markup

    from fluxscale.evaluate.figures import CAPTIONS

    for name in ("fig9", "figA1", "figB3", "figB4", "figC2"):  # numbered, with the whole caption below
        title, _, rest = CAPTIONS[name].partition(": ")
        assert f"<b>{markup.escape(title)}.</b> {markup.escape(rest)}</figcaption>" in html, name
    assert "Fig. 9: EC-ATM (blue)" in CAPTIONS["fig9"] and "Fig. B3: share (%)" in CAPTIONS["figB3"]


def test_figC2_and_fig9_scores_equal_numpy(reported):
    from fluxscale.evaluate import evaluation_data

    root, rep = reported
    out = root / "report"
    ev = evaluation_data(root)
    sites = open_store(store_path(root, "sites"), "sites")
    obs = np.where(sites.NEE_QC.values >= 0.5, sites.NEE.values, np.nan)
    cls = np.array([NAME.get(int(k), "none") for k in _cell_pft(root)[sites.cell.values]])
    c2 = pd.read_csv(out / "figC2_sites_by_pft.csv")
    assert set(c2.pft) == set(cls) - {"none"}
    for r in c2.itertuples():
        k = cls == r.pft
        sim = ev[f"site_{r.model}"].values[k]
        ok = np.isfinite(obs[k]) & np.isfinite(sim)
        assert r.n_sites == k.sum() and r.n == ok.sum()
        assert r.RMSE == pytest.approx(np.sqrt(np.mean((sim[ok] - obs[k][ok]) ** 2)))
        assert r.bias == pytest.approx(np.mean(sim[ok] - obs[k][ok]))
    # Fig. 9: the two tropical towers with the most observed days
    days = np.isfinite(obs).sum(axis=1)
    trop = np.flatnonzero(np.abs(sites.lat.values) < 23.5)
    best = trop[np.argsort(-days[trop], kind="stable")[:2]]
    f9 = pd.read_csv(out / "fig9_sites.csv")
    assert list(dict.fromkeys(f9.site)) == [str(s) for s in sites.site.values[best]]
    for r in f9.itertuples():
        i = list(sites.site.values).index(r.site)
        sim = ev[f"site_{r.model}"].values[i]
        ok = np.isfinite(obs[i]) & np.isfinite(sim)
        assert r.n == ok.sum() and r.RMSE == pytest.approx(np.sqrt(np.mean((sim[ok] - obs[i][ok]) ** 2)))
        assert r.R == pytest.approx(np.corrcoef(obs[i][ok], sim[ok])[0, 1])


def test_figures_without_a_pft_map_and_named_fig9_towers(reported, tmp_path):
    from fluxscale.evaluate import evaluation_data, evaluation_tables
    from fluxscale.evaluate.figures import static_data, write_figures

    src, _ = reported
    root = tmp_path / "data"
    shutil.copytree(src, root, ignore=shutil.ignore_patterns("report*"))
    _drop_pft(root)
    ev = evaluation_data(root)
    names = tuple(str(s) for s in ev.site.values[[3, 0]])
    done, skipped = write_figures(ev, evaluation_tables(ev), tmp_path / "figs", None, static_data(root), names)
    assert {k: skipped[k] for k in ("figB3", "figB4", "figC2")} == dict.fromkeys(("figB3", "figB4", "figC2"),
                                                                               "no PFT map (grid.zarr has no pft)")
    assert "figA1" in done and "fig9" in done
    assert list(dict.fromkeys(pd.read_csv(tmp_path / "figs" / "fig9_sites.csv").site)) == list(names)
    from fluxscale.errors import FluxscaleError

    with pytest.raises(FluxscaleError, match="no tower XX-T999"):
        write_figures(ev, evaluation_tables(ev), tmp_path / "figs2", None, None, ("XX-T999",))
