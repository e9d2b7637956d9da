"""Evaluation: the tables on a hand-built case (numpy by hand), and the whole of
``fluxscale evaluate`` on the tiny twin (numpy integrals of the cube, the torch members at
the towers, figures that are drawn, a report that needs no network)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from fluxscale.config import EvalConfig, InferConfig
from fluxscale.dataset.drivers import DRIVER_NAMES
from fluxscale.evaluate import evaluation_tables, summary_dict, write_tables
from fluxscale.infer.stage import infer
from fluxscale.evaluate.report import evaluate
from fluxscale.dataset.stores import open_store, store_path

REGIONS = ["AAA", "BBB", "GLOBAL"]


def _hand_built(seed=0) -> xr.Dataset:
    """3 years of monthly integrals for 2 regions + GLOBAL, 2 members per ensemble, 2
    inversion systems, 3 towers × 10 days."""
    rng = np.random.default_rng(seed)
    t = pd.date_range("2001-01-01", periods=36, freq="MS")
    base = np.sin(2 * np.pi * np.arange(36) / 12)
    srcs = ["EC-ATM", "EC", "prior", "inversions", "truth"]
    mon = np.stack([[base * (k + 1) + rng.normal(scale=0.3, size=36) for k in range(3)] for _ in srcs])
    mem = rng.normal(size=(4, 3, 36)) + base
    mem[:2] += mon[srcs.index("EC")] - mem[:2].mean(0)  # the members' mean is the ensemble's series
    mem[2:] += mon[srcs.index("EC-ATM")] - mem[2:].mean(0)
    days = pd.date_range("2001-01-01", periods=10)
    ds = xr.Dataset(
        {"monthly": (("source", "region", "time"), mon),
         "member_monthly": (("member", "region", "time"), mem),
         "system_monthly": (("system", "region", "time"), rng.normal(size=(2, 3, 36))),
         "gcb": ("year", np.array([-1.0, -2.5, -1.5])), "gcb_sigma": ("year", np.full(3, 0.5)),
         "site_obs": (("site", "day"), rng.normal(size=(3, 10))),
         "site_region": ("site", np.array(["AAA", "AAA", "BBB"], dtype=object))},
        coords={"source": srcs, "region": REGIONS, "time": t, "year": [2001, 2002, 2003],
                "member": ["ec-0", "ec-1", "ecatm-0", "ecatm-1"],
                "member_ensemble": ("member", ["EC", "EC", "EC-ATM", "EC-ATM"]), "system": ["A", "B"],
                "site": ["s1", "s2", "s3"], "day": days})
    ds["member_bridge"] = ds.member_monthly * 1.1 + rng.normal(scale=0.2, size=(4, 3, 36))
    ds["member_bridge"] = ds.member_bridge.where(ds.region != "GLOBAL")
    for s in ("EC-ATM", "EC", "prior", "truth"):
        ds[f"site_{s}"] = ds.site_obs + rng.normal(scale=0.5, size=(3, 10))
    ds["site_obs"] = ds.site_obs.where(ds.site_obs > -1.5)  # gaps
    return ds


def _get(df, **kw):
    sel = np.ones(len(df), bool)
    for k, v in kw.items():
        sel &= (df[k] == v).values
    assert sel.sum() == 1, kw
    return float(df[sel].value.iloc[0])


def test_tables_on_a_hand_built_case(tmp_path):
    ev = _hand_built()
    df = evaluation_tables(ev)
    mon = ev.monthly.values
    s = {k: i for i, k in enumerate(ev.source.values)}
    ann = mon.reshape(5, 3, 3, 12).sum(-1)  # (source, region, year)
    for m in ("EC-ATM", "EC", "prior"):
        for j, reg in enumerate(REGIONS):
            for ref in ("inversions", "truth"):
                a, b = ann[s[m], j], ann[s[ref], j]
                assert _get(df, table="annual", model=m, region=reg, reference=ref, metric="R") == \
                    pytest.approx(np.corrcoef(a, b)[0, 1])
                assert _get(df, table="annual", model=m, region=reg, reference=ref, metric="RMSE") == \
                    pytest.approx(np.sqrt(np.mean((a - b) ** 2)))
                x, y = mon[s[m], j], mon[s[ref], j]
                assert _get(df, table="monthly", model=m, region=reg, reference=ref, metric="R") == \
                    pytest.approx(np.corrcoef(x, y)[0, 1])
                cx, cy = x.reshape(3, 12).mean(0), y.reshape(3, 12).mean(0)
                assert _get(df, table="monthly", model=m, region=reg, reference=ref, metric="MSC RMSE") == \
                    pytest.approx(np.sqrt(np.mean((cx - cy) ** 2)))
                nse = 1 - np.sum((x - y) ** 2) / np.sum((y - y.mean()) ** 2)
                assert _get(df, table="nnse", model=m, region=reg, reference=ref, metric="nNSE") == \
                    pytest.approx(1 / (2 - nse))
        g = ann[s[m], 2]
        assert _get(df, table="annual", model=m, region="GLOBAL", reference="GCB", metric="RMSE") == \
            pytest.approx(np.sqrt(np.mean((g - ev.gcb.values) ** 2)))
    # IAV: sd (ddof=1) of the detrended annual values; members' range
    yrs = np.array([2001, 2002, 2003.0])

    def iav(v):
        return np.std(v - np.polyval(np.polyfit(yrs, v, 1), yrs), ddof=1)

    assert _get(df, table="iav", model="EC", region="AAA", reference="-", metric="IAV") == \
        pytest.approx(iav(ann[s["EC"], 0]))
    mem_ann = ev.member_monthly.values.reshape(4, 3, 3, 12).sum(-1)
    assert _get(df, table="iav", model="EC-ATM", region="GLOBAL", reference="-", metric="IAV members max") == \
        pytest.approx(max(iav(mem_ann[2, 2]), iav(mem_ann[3, 2])))
    assert _get(df, table="iav", model="GCB", region="GLOBAL", reference="-", metric="IAV") == \
        pytest.approx(iav(ev.gcb.values))
    # post-hoc bridge validity: the members' mean of mean|b - i| / mean|i|
    b, i = ev.member_bridge.values, ev.member_monthly.values
    rel = np.abs(b - i).mean(-1) / np.abs(i).mean(-1)  # (member, region)
    assert _get(df, table="bridge", model="EC-ATM", region="BBB", reference="full integral", metric="rel diff") == \
        pytest.approx(rel[2:, 1].mean())
    assert _get(df, table="bridge", model="EC", region="AAA", reference="full integral", metric="R") == \
        pytest.approx(np.mean([np.corrcoef(b[k, 0], i[k, 0])[0, 1] for k in (0, 1)]))
    assert not ((df.table == "bridge") & (df.region == "GLOBAL")).any()
    # site RMSE over every valid (site, day), and by region
    obs = ev.site_obs.values
    for m in ("EC-ATM", "EC", "prior"):
        sim = ev[f"site_{m}"].values
        ok = np.isfinite(obs)
        assert _get(df, table="site", model=m, region="ALL", reference="towers", metric="RMSE") == \
            pytest.approx(np.sqrt(np.mean((sim[ok] - obs[ok]) ** 2)))
        o, si = obs[2], sim[2]
        k = np.isfinite(o)
        assert _get(df, table="site", model=m, region="BBB", reference="towers", metric="RMSE") == \
            pytest.approx(np.sqrt(np.mean((si[k] - o[k]) ** 2)))
    # the science checks, from the same numbers
    from fluxscale.evaluate import science_checks

    checks = {c["check"]: c for c in science_checks(df)}
    g = {m: np.sqrt(np.mean((ann[s[m], 2] - ann[s["truth"], 2]) ** 2)) for m in ("EC-ATM", "EC")}
    c = checks["global annual RMSE vs truth, EC-ATM (PgC/yr)"]
    assert c["value"] == pytest.approx(g["EC-ATM"]) and c["passed"] == (g["EC-ATM"] <= 1.0)
    assert not any("/ EC" in k or "decoupling" in k for k in checks)  # the ratios to EC are gone (issue 31)
    checks_ec = {c["check"]: c for c in science_checks(df, default="EC")}
    assert checks_ec["global annual RMSE vs truth, EC (PgC/yr)"]["value"] == pytest.approx(g["EC"])
    assert science_checks(df[df.reference != "truth"]) == []
    # written forms agree with the long table
    paths = write_tables(df, tmp_path, ev)
    summ = json.loads(paths["summary"].read_text())
    assert summ["models"]["EC"]["AAA"]["annual RMSE vs inversions"] == pytest.approx(
        _get(df, table="annual", model="EC", region="AAA", reference="inversions", metric="RMSE"))
    assert summ == json.loads(json.dumps(summary_dict(df, ev)))
    wide = pd.read_csv(paths["monthly_vs_truth"], index_col="region")
    assert wide.loc["BBB", "EC MSC R"] == pytest.approx(
        _get(df, table="monthly", model="EC", region="BBB", reference="truth", metric="MSC R"))
    md = paths["markdown"].read_text()
    assert "Table 2" in md and "| GLOBAL |" in md and "against GCB" in md


# --- the whole stage on the tiny twin -------------------------------------------------------

@pytest.fixture(scope="module")
def evaluated(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate") / "data"
    shutil.copytree(tiny_models, root)
    infer(root, InferConfig(), show_progress=False)
    rep = evaluate(root, EvalConfig(out=str(root / "report")))
    return root, rep


def test_regional_integrals_equal_numpy_over_the_cube(evaluated):
    from fluxscale.evaluate import evaluation_data

    root, _ = evaluated
    ev = evaluation_data(root)
    cube = xr.open_zarr(root / "nee.zarr")
    grid = open_store(store_path(root, "grid"), "grid").load()
    w = (grid.cell_area * grid.land_fraction).values
    reg = grid.region.values
    nee = cube.NEE_monthly.sel(ensemble="ecatm").values  # the members' mean, gridded
    days = pd.DatetimeIndex(cube.month.values).days_in_month.values
    months = pd.DatetimeIndex(ev.time.values)
    idx = pd.DatetimeIndex(cube.month.values).get_indexer(months)
    for r, name in ((4, "BRA"), (6, "EU"), (None, "GLOBAL")):
        m = (reg == r) if r is not None else (reg >= 0)
        want = np.nansum(nee[:, m] * w[m], axis=1) * days / 1e15
        np.testing.assert_allclose(ev.monthly.sel(source="EC-ATM", region=name).values, want[idx], rtol=2e-5,
                                   atol=1e-9)
    # the bridges (Eq. 7) on each member's own monthly NEE at their pixels
    br = open_store(store_path(root, "bridges"), "bridges")
    k = list(br.region.values).index("EU")
    m = br.pixel_region.values == k
    pc = br.pixel_cell.values[m]
    member = cube.NEE_member_monthly.sel(member="ec-fold1").values[:, grid.cell_ilat.values[pc], grid.cell_ilon.values[pc]]
    want = member.astype(np.float64) @ br.weight.values[m] + float(br.bias.values[k])
    np.testing.assert_allclose(ev.member_bridge.sel(member="ec-fold1", region="EU").values, want[idx], rtol=1e-6)
    integ = open_store(store_path(root, "integrals"), "integrals").sel(time=months)
    np.testing.assert_allclose(ev.monthly.sel(source="inversions").values,
                               integ.inversions.mean("system").values, rtol=1e-12)


def test_site_values_are_the_torch_members_at_the_towers(evaluated):
    import torch

    from fluxscale.evaluate import evaluation_data
    from fluxscale.learn.model import load_member

    root, _ = evaluated
    ev = evaluation_data(root)
    sites = open_store(store_path(root, "sites"), "sites")
    x = np.stack([sites[n].values for n in DRIVER_NAMES], axis=-1).astype(np.float32)
    preds = []
    for fold in (0, 1):
        model, _ = load_member(root / "models" / f"ec-fold{fold}.pt")
        with torch.no_grad():
            preds.append(model(torch.from_numpy(x.reshape(-1, 10))).numpy().reshape(x.shape[:2]))
    np.testing.assert_allclose(ev["site_EC"].values, np.mean(preds, axis=0), rtol=1e-4, atol=1e-5)
    qc = sites.NEE_QC.values >= 0.5
    np.testing.assert_array_equal(np.isfinite(ev.site_obs.values), qc & np.isfinite(sites.NEE.values))


def test_report_figures_and_summary(evaluated):
    import matplotlib.image as mpimg

    root, rep = evaluated
    out = root / "report"
    assert not (root / "report.partial").exists()
    for name in ("fig2", "fig3", "fig4", "figC1", "fig5", "fig6", "fig7", "fig8", "figB2"):
        img = mpimg.imread(rep.figures[name])
        assert img.shape[0] > 200 and img.shape[1] > 300, name
        assert img[..., :3].std() > 0.05, f"{name} is blank"
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(rep.figures)
    assert not re.search(r"""(src|href)=["']?https?:""", html), "the report must not load from the network"
    assert "Table 3" in html and "Provenance" in html and "versions" in html
    summ = json.loads((out / "summary.json").read_text())
    df = pd.read_csv(out / "metrics.csv")
    row = df[(df.table == "annual") & (df.model == "EC-ATM") & (df.region == "GLOBAL") & (df.reference == "truth")
             & (df.metric == "RMSE")].value.iloc[0]
    assert summ["models"]["EC-ATM"]["GLOBAL"]["annual RMSE vs truth"] == pytest.approx(row)
    assert set(summ["models"]) >= {"EC-ATM", "EC", "prior", "GCB"}
    members = {f"member {m}" for m in xr.open_zarr(root / "nee.zarr").member.values if str(m).startswith("ec-")}
    # 18 regions + GLOBAL, the towers' ALL, the consistency bands and pixels, and each member
    assert set(summ["models"]["EC"]) == set(ev_regions()) | {"ALL", "TROPICS", "EXTRATROPICS", "PIXELS"} | members
    checks = {c["check"]: c for c in summ["science_checks"]}
    # the checks are the default product's: the cube's dual (the atmospheric layer)
    assert "global annual RMSE vs truth, dual (PgC/yr)" in checks and len(checks) >= 9
    # the scorecard (issue 31): in summary.json, scorecard.csv, tables.md, Fig. S1 and the report
    sc = summ["scorecard"]
    card = pd.read_csv(out / "scorecard.csv")
    assert sc["default"] == "dual" and set(card["product"]) >= {"dual", "EC-ATM", "EC", "prior", "inversion mean",
                                                                "EC + offset", "flat inversions"}
    row = card[(card.metric == "cell mean RMSE") & (card["product"] == "EC-ATM")].value.iloc[0]
    assert sc["cell mean RMSE"]["EC-ATM"] == pytest.approx(row)
    assert sc["best"]["cell mean RMSE"] == list(card[(card.metric == "cell mean RMSE") & card.best]["product"])
    scored = [c for c in summ["science_checks"] if c["check"].startswith("scorecard: ")]
    assert len(scored) == 7 and all(c["best"] in set(card["product"]) for c in scored)
    assert "## Scorecard" in (out / "tables.md").read_text() and "figS1" in rep.figures
    assert "<h2>Scorecard</h2>" in (out / "report.html").read_text()


def test_the_report_reads_like_the_paper(evaluated):
    """Issue 23: every figure numbered with its caption, the provenance collapsed, members
    written EC-ATM/EC outside it, no file name with a space, counts written as integers that
    equal the long table's."""
    from fluxscale.evaluate.figures import CAPTIONS

    root, rep = evaluated
    out = root / "report"
    html = (out / "report.html").read_text()
    body, _, prov = html.partition("<h2>Provenance</h2><details>")
    assert "</details>" in prov and "&quot;versions&quot;" in prov and "<pre>" not in body
    for name in rep.figures:
        title = CAPTIONS[name].split(": ")[0]
        assert title.startswith("Fig. ") and f"<h3>{title}: " in body, name
        assert f"<b>{title}.</b>" in body
    assert "ecatm" not in body and "EC-ATM fold 0" in body and "EC fold 1" in body
    assert "&lt;NA&gt;" not in body and "<NA>" not in body
    assert "preset tiny" in body  # the twin's preset, not None
    assert not [q.name for q in out.iterdir() if " " in q.name]
    assert (out / "bridge_vs_full_integral.csv").exists()
    df = pd.read_csv(out / "metrics.csv")
    lines = (out / "site_vs_towers.csv").read_text().splitlines()
    head = lines[0].split(",")
    row = next(ln.split(",") for ln in lines if ln.startswith("ALL,"))
    counts = [k for k, h in enumerate(head) if h.endswith(" n")]
    assert len(counts) >= 2
    for k in counts:
        model = head[k][:-2]
        want = df[(df.table == "site") & (df.model == model) & (df.region == "ALL") & (df.reference == "towers")
                  & (df.metric == "n")].value.iloc[0]
        assert row[k].isdigit() and int(row[k]) == want, (head[k], row[k], want)
        assert f"<td>{int(want)}</td>" in body


def test_maps_have_coastlines_and_every_colour_scale_a_colourbar(evaluated, tmp_path):
    """Issue 23, on the figures themselves (kept open instead of saved): maps carry the
    shipped coastline and a colourbar, Fig. 8's hexbins a colourbar each, Fig. 2's legend
    lies outside every panel."""
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection, PolyCollection, QuadMesh

    import fluxscale.evaluate.figures as F
    from fluxscale.evaluate import evaluation_data, evaluation_tables

    root, _ = evaluated
    ev = evaluation_data(root)
    df = evaluation_tables(ev)
    inp = F.FigureInputs(ev, df, maps=F.evaluation_maps(root))
    figs = {f.file: f.draw(inp, tmp_path) for f in F.FIGURES if f.name in ("fig2", "fig8", "fig5", "figB2")}
    n_coast = sum(len(x) for x in F.coastline())
    try:
        for name in ("fig5_annual_maps", "figB2_bridge_inclusion"):
            # the map panels: a mesh with a colourbar (the colourbars' own axes hold meshes too)
            panels = [a for a in figs[name].axes
                      if any(isinstance(c, QuadMesh) and c.colorbar is not None for c in a.collections)]
            n_ens = xr.open_zarr(root / "nee.zarr").sizes["ensemble"]  # EC, EC-ATM and the layer's dual
            assert len(panels) == (2 * n_ens + 2 if name == "fig5_annual_maps" else 1), name
            for a in panels:
                coast = [c for c in a.collections if isinstance(c, LineCollection)]
                assert coast and sum(len(s) for s in coast[0].get_segments()) == n_coast, name
                assert a.get_xticklabels() and a.get_xticklabels()[0].get_text().endswith("W"), name
        hexes = [c for a in figs["fig8_sites"].axes for c in a.collections if isinstance(c, PolyCollection)]
        assert len(hexes) == 2 and all(h.colorbar is not None for h in hexes)
        f2 = figs["fig2_global_annual"]
        assert len(f2.legends) == 1 and not any(a.get_legend() for a in f2.axes)
        f2.canvas.draw()
        box = f2.legends[0].get_window_extent()
        assert not any(box.overlaps(a.get_window_extent()) for a in f2.axes)
        assert "EC-ATM (mean of 2)" in [t.get_text() for t in f2.legends[0].get_texts()]
    finally:
        for fig in figs.values():
            plt.close(fig)


def test_the_stage_opens_each_store_once(evaluated, monkeypatch):
    """The data, the maps and the static fields of one evaluation share the stores: each
    is opened once, and only by fluxscale.evaluate.data."""
    import fluxscale.evaluate.data as D
    from fluxscale.evaluate.collect import collect_evaluation_data
    from fluxscale.evaluate.figures import map_fields, static_fields

    root, _ = evaluated
    opened = []
    real = D.open_store
    monkeypatch.setattr(D, "open_store", lambda path, name=None, **kw: opened.append(name) or real(path, name, **kw))
    stores = D.open_evaluation_stores(root)
    ev = collect_evaluation_data(stores)
    map_fields(stores)
    static_fields(stores)
    assert sorted(opened) == sorted(set(opened))
    assert set(opened) == {"grid", "integrals", "nee", "gcb", "bridges", "truth", "sites", "prior", "inversions", "fire"}
    assert ev.attrs["root"] == str(root)


def test_each_figure_is_one_object_with_its_caption():
    """The figures' names, files and captions agree: ``figB2`` is ``Fig. B2`` in its caption
    and its file starts with its name; the report's order has each figure once."""
    from fluxscale.evaluate.figures import CAPTIONS, FIGURES, TITLES

    names = [f.name for f in FIGURES]
    assert len(set(names)) == len(names) == 18 and set(CAPTIONS) == set(TITLES) == set(names)
    for f in FIGURES:
        assert f.caption.startswith(f"Fig. {f.name[3:]}: ") and f.file.startswith(f.name + "_"), f.name


def test_the_shipped_coastline_is_the_land_fractions_half_contour():
    """fluxscale/data/coastline_0.5deg.npz is what tools/build_coastline.py makes from the
    shipped land fraction: rebuilt here and compared; every vertex lies between a cell that
    is mostly land and one that is mostly sea."""
    import importlib.util

    import fluxscale.evaluate.figures as F
    from fluxscale.dataset.grid import _base_masks

    spec = importlib.util.spec_from_file_location("build_coastline", Path(__file__).parents[2] / "tools" /
                                                  "build_coastline.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    lf, _, _ = _base_masks()
    lat = -89.75 + 0.5 * np.arange(360)
    lon = -179.75 + 0.5 * np.arange(720)
    rebuilt = tool.coastline_polylines(lf, lat, lon)
    shipped = F.coastline()
    assert len(rebuilt) == len(shipped) > 50
    for a, b in zip(rebuilt, shipped):
        np.testing.assert_allclose(a, b, atol=0.006)  # stored in hundredths of a degree
    pts = np.concatenate(shipped)
    i = np.clip(np.round((pts[:, 1] + 89.75) / 0.5).astype(int), 0, 359)
    j = np.round((pts[:, 0] + 179.75) / 0.5).astype(int) % 720
    near = np.stack([lf[np.clip(i + di, 0, 359), (j + dj) % 720] for di in (-1, 0, 1) for dj in (-1, 0, 1)])
    assert ((near.max(0) >= 0.5) & (near.min(0) < 0.5)).all()
    assert (Path(F.__file__).parents[2] / "data" / "coastline_0.5deg.npz").stat().st_size < 100 * 1024


def ev_regions():
    from fluxscale.bridges.integrals import REGION_LABELS

    return REGION_LABELS


def test_consistency_against_numpy_over_the_cube(evaluated):
    """Period means per band and per member and the per-cell RMSE of mean annual NEE, from
    the cube and the truth with plain numpy."""
    root, _ = evaluated
    df = pd.read_csv(root / "report" / "metrics.csv")
    cube = xr.open_zarr(root / "nee.zarr")
    truth = xr.open_zarr(root / "truth.zarr")
    grid = open_store(store_path(root, "grid"), "grid").load()
    integ = open_store(store_path(root, "integrals"), "integrals")
    months = pd.DatetimeIndex(integ.time.values)
    full = [y for y in np.unique(months.year) if np.sum(months.year == y) == 12]
    use = months[months.year.isin(full)]
    days = use.days_in_month.values.astype(float)
    il, jl = grid.cell_ilat.values, grid.cell_ilon.values
    area = (grid.cell_area * grid.land_fraction).values[il, jl]
    trop = np.abs(grid.cell_lat.values) < 23.5

    def annual_map(monthly):  # (month, cell) → mean annual gC m-2 yr-1
        return (monthly * days[:, None]).sum(axis=0) / len(full)

    ecatm = annual_map(cube.NEE_monthly.sel(ensemble="ecatm", month=use.values).values[:, il, jl].astype(float))
    ec = annual_map(cube.NEE_monthly.sel(ensemble="ec", month=use.values).values[:, il, jl].astype(float))
    tr = annual_map(truth.NEE_monthly.sel(month=use.values).values.astype(float))
    get = lambda model, region, ref, metric: df[(df.table == "consistency") & (df.model == model) & (df.region == region)  # noqa: E731
                                                & (df.reference == ref) & (df.metric == metric)].value.iloc[0]
    for band, k in (("TROPICS", trop), ("EXTRATROPICS", ~trop)):
        assert get("EC-ATM", band, "-", "mean") == pytest.approx((ecatm * area)[k].sum() / 1e15, rel=1e-5)
        assert get("truth", band, "-", "mean") == pytest.approx((tr * area)[k].sum() / 1e15, rel=1e-5)
    for name, m in (("EC-ATM", ecatm), ("EC", ec)):
        want = np.sqrt(((m - tr) ** 2 * area).sum() / area.sum())
        assert get(name, "PIXELS", "truth", "RMSE mean annual") == pytest.approx(want, rel=1e-5)
    member = str(cube.member.values[0])
    mm = cube.NEE_member_monthly.sel(member=member, month=use.values).values[:, il, jl].astype(float)
    want = (annual_map(mm) * area).sum() / 1e15
    label = "EC-ATM" if member.startswith("ecatm") else "EC"
    assert get(label, f"member {member}", "-", "mean") == pytest.approx(want, rel=1e-4)


def test_cli_evaluate_and_errors(evaluated, tmp_path):
    from fluxscale.run.cli import app

    root, _ = evaluated
    res = CliRunner().invoke(app, ["evaluate", str(root), "--set", f"out={tmp_path / 'r2'}", "--set", "maps=false"])
    assert res.exit_code == 0, res.output
    assert f"report at {tmp_path / 'r2' / 'report.html'}" in res.output
    assert (tmp_path / "r2" / "fig2_global_annual.png").exists()
    assert not (tmp_path / "r2" / "fig5_annual_maps.png").exists()
    res = CliRunner().invoke(app, ["evaluate", str(root), "--set", "cube=missing.zarr"])
    assert res.exit_code == 2 and "missing.zarr: not found" in res.output and "fluxscale infer" in res.output
    res = CliRunner().invoke(app, ["evaluate", str(root), "--set", "qc_min=3"])
    assert res.exit_code == 2 and "qc_min" in res.output


# --- one-against-many (§3.6, Figs. C3–C5) ------------------------------------------------------

def test_choose_sets_and_set_names():
    from fluxscale.errors import ConfigError, FluxscaleError
    from fluxscale.config import TrainConfig
    from fluxscale.run.one_against_many import choose_sets, set_name

    systems = ["CAMS", "CTE", "CarboScope", "UoE", "NISMON"]
    sets = choose_sets(systems, pairs=2, triples=1, seed=3)
    assert sets[:5] == [(s,) for s in systems]
    assert [len(s) for s in sets[5:]] == [2, 2, 3] and len(set(sets)) == len(sets)
    assert all(set(s) <= set(systems) for s in sets)
    assert sets == choose_sets(systems, pairs=2, triples=1, seed=3)  # reproducible
    assert set_name(("UoE", "CTE")) == "CTE+UoE"
    with pytest.raises(FluxscaleError, match="groups of 3"):
        choose_sets(["A", "B"], pairs=1, triples=1)
    with pytest.raises(ConfigError, match="model_set"):
        TrainConfig(model_set="../elsewhere")


def test_one_against_many_sets_figures_and_table(evaluated, tmp_path):
    import matplotlib.image as mpimg

    from fluxscale.run.cli import app
    from fluxscale.config import TrainConfig
    from fluxscale.evaluate import evaluation_data
    from fluxscale.evaluate.metrics import mean_seasonal_cycle
    from fluxscale.run.one_against_many import run_one_against_many
    from fluxscale.learn.model import load_member

    src, _ = evaluated
    root = tmp_path / "data"
    shutil.copytree(src, root, ignore=shutil.ignore_patterns("report*"))
    train = TrainConfig(epochs=2, steps_per_epoch=3, ec_batch=2000, threads=1, folds=(0,))
    notes = []
    run_one_against_many(root, [("CAMS",), ("UoE", "CTE")], train, show_progress=False, say=notes.append)
    _, meta = load_member(root / "models" / "sets" / "CTE+UoE" / "ecatm-fold0.pt")
    assert meta["config"]["systems"] == ["CTE", "UoE"] and meta["metrics"]["systems"] == ["CTE", "UoE"]
    assert not (root / "models" / "sets" / "CAMS" / "ec-fold0.pt").exists()  # EC-ATM only
    # a rerun keeps the members and the cubes
    notes.clear()
    run_one_against_many(root, [("CAMS",), ("UoE", "CTE")], train, show_progress=False, say=notes.append)
    assert sum("keeping 1 members" in n for n in notes) == 2 and sum(": 0 blocks written" in n for n in notes) == 2, notes

    ev = evaluation_data(root)
    assert list(ev.set.values) == ["CAMS", "CTE+UoE"] and list(ev.set_n.values) == [1, 2]
    grid = open_store(store_path(root, "grid"), "grid").load()
    w = (grid.cell_area * grid.land_fraction).values
    reg = grid.region.values
    cube = xr.open_zarr(root / "nee-CTE+UoE.zarr")
    assert cube.attrs["fluxscale_model_set"] == "CTE+UoE"
    nee = cube.NEE_member_monthly.values.mean(axis=0)  # (month, lat, lon), one member
    days = pd.DatetimeIndex(cube.month.values).days_in_month.values
    idx = pd.DatetimeIndex(cube.month.values).get_indexer(pd.DatetimeIndex(ev.time.values))
    m = reg == 6  # EU
    want = np.nansum(nee[:, m] * w[m], axis=1) * days / 1e15
    np.testing.assert_allclose(ev.oam_monthly.sel(set="CTE+UoE", region="EU").values, want[idx], rtol=2e-5,
                               atol=1e-9)
    integ = open_store(store_path(root, "integrals"), "integrals").sel(time=ev.time.values)
    inv = integ.inversions.values
    k = [list(integ.system.values).index(s) for s in ("CTE", "UoE")]
    np.testing.assert_allclose(ev.oam_target.sel(set="CTE+UoE").values, inv[k].mean(axis=0), rtol=1e-12)

    df = evaluation_tables(ev)
    x = ev.oam_monthly.sel(set="CAMS", region="BRA").values.reshape(-1, 12).mean(0)
    y = inv[list(integ.system.values).index("CAMS"), list(integ.region.values).index("BRA")].reshape(-1, 12).mean(0)
    assert _get(df, table="oam", model="EC-ATM[CAMS]", region="BRA", reference="own systems",
                metric="MSC RMSE") == pytest.approx(np.sqrt(np.mean((x - y) ** 2)))
    main = mean_seasonal_cycle(ev.monthly.sel(source="EC-ATM", region="BRA")).values
    assert _get(df, table="oam", model="EC-ATM[CAMS]", region="BRA", reference="own systems",
                metric="MSC RMSE main") == pytest.approx(np.sqrt(np.mean((main - y) ** 2)))

    rep = evaluate(root, EvalConfig(out=str(tmp_path / "report"), maps=False))
    for name in ("figC3", "figC4"):
        img = mpimg.imread(rep.figures[name])
        assert img.shape[0] > 400 and img[..., :3].std() > 0.05, name
    assert "figC5" not in rep.figures and "three or more" in rep.skipped["figC5"]
    assert "one-against-many" in (tmp_path / "report" / "tables.md").read_text()
    res = CliRunner().invoke(app, ["one-against-many", str(root), "--systems", "CAMS,XYZ"])
    assert res.exit_code == 2 and "XYZ not among the inversion systems" in res.output, res.output


def test_a_non_finite_member_value_on_land_is_refused_by_name(evaluated, tmp_path):
    """evaluate integrates every member's monthly NEE in one pass that also counts non-finite
    land values: a NaN at one land cell of one member is refused naming the cube, the
    variable, the member, the month and the cell, and no report is written."""
    import zarr

    from fluxscale.errors import StoreError

    root, _ = evaluated
    copy = tmp_path / "data"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("report"))
    grid = open_store(store_path(copy, "grid"), "grid")
    i, j = int(grid.cell_ilat.values[11]), int(grid.cell_ilon.values[11])
    cube = open_store(store_path(copy, "nee"), "nee")
    dims = cube.NEE_member_monthly.dims
    idx = {"member": 1, "month": 4, "lat": i, "lon": j}
    zarr.open_group(str(store_path(copy, "nee")), mode="r+")["NEE_member_monthly"][tuple(idx[d] for d in dims)] = np.nan
    member = str(cube.member.values[1])
    month = pd.Timestamp(cube.month.values[4])
    with pytest.raises(StoreError, match=rf"nee.zarr: variable 'NEE_member_monthly': 1 non-finite value\(s\) on land "
                                         rf"cells.*first: member {member}, {month:%Y-%m-%d}, lat {float(grid.lat[i]):.2f}"):
        evaluate(copy, EvalConfig(out=str(copy / "report")))
    assert not (copy / "report" / "report.html").exists()
