"""Every bad store gets one clear StoreError naming the store, the variable and the problem."""

import shutil

import numpy as np
import pytest
import zarr

from fluxscale.errors import StoreError
from fluxscale.dataset.stores import open_store, open_stores, store_path

from ..conftest import raise_if_dask_computes


@pytest.fixture
def twin_copy(tiny_twin, tmp_path):
    dst = tmp_path / "data"
    shutil.copytree(tiny_twin, dst)
    return dst


def _group(root, name):
    return zarr.open_group(str(store_path(root, name)), mode="r+")


def test_opening_is_lazy_and_valid(tiny_twin):
    with raise_if_dask_computes():
        stores = open_stores(tiny_twin)
    assert set(stores) == {"grid", "drivers", "sites", "inversions", "fire", "prior", "gcb", "truth"}
    assert stores["truth"].NEE.chunks is not None and stores["drivers"].Tair.chunks is not None
    open_stores(tiny_twin, deep=True)  # the real values pass the deep checks


def _expect(root, name, pattern, deep=False):
    with pytest.raises(StoreError) as info:
        open_stores(root, deep=deep)
    msg = str(info.value)
    assert f"{name}.zarr" in msg, msg
    assert pytest.importorskip("re").search(pattern, msg), msg
    return info.value


def test_missing_variable(twin_copy):
    del _group(twin_copy, "drivers")["WAI2"]
    e = _expect(twin_copy, "drivers", r"variable 'WAI2': missing")
    assert e.variable == "WAI2" and e.problem == "missing"


def test_wrong_units(twin_copy):
    _group(twin_copy, "prior")["NEE"].attrs["units"] = "kg m-2 s-1"
    _expect(twin_copy, "prior", r"variable 'NEE': has units 'kg m-2 s-1', expected 'gC m-2 d-1'")


def test_units_spelling_is_tolerated(twin_copy):
    _group(twin_copy, "prior")["NEE"].attrs["units"] = "gC  m-2 d-1"
    open_stores(twin_copy)


def test_wrong_grid(twin_copy, tmp_path):
    from fluxscale.twin import make_twin

    other = make_twin(tmp_path / "other", preset="tiny", resolution_deg=3.0, inversion_resolution_deg=6.0,
                      show_progress=False)
    shutil.rmtree(store_path(twin_copy, "prior"))
    shutil.copytree(store_path(other, "prior"), store_path(twin_copy, "prior"))
    _expect(twin_copy, "prior", r"variable 'NEE': grid 60x120 is not the model grid 90x180")
    shutil.rmtree(store_path(twin_copy, "drivers"))
    shutil.copytree(store_path(other, "drivers"), store_path(twin_copy, "drivers"))
    _expect(twin_copy, "drivers", r"variable 'cell': \d+ cells, but the grid has 3842 land cells \(wrong grid\)")


def test_nan_where_none_allowed_small_variable(twin_copy):
    _group(twin_copy, "grid")["cell_area"][3, 4] = np.nan
    lat, lon = float(_group(twin_copy, "grid")["lat"][3]), float(_group(twin_copy, "grid")["lon"][4])
    _expect(twin_copy, "grid", rf"variable 'cell_area': 1 NaN values where none is allowed \(first at lat {lat}, lon {lon}\)")


def test_infinite_values_are_refused_even_where_nan_is_allowed(twin_copy):
    """±inf is no missing-value marker: refused in a small (eager) variable, naming the first
    by its coordinates, and by the deep check of a big one whose NaN are allowed."""
    _group(twin_copy, "grid")["cell_area"][5, 6] = np.inf
    lat, lon = float(_group(twin_copy, "grid")["lat"][5]), float(_group(twin_copy, "grid")["lon"][6])
    _expect(twin_copy, "grid", rf"variable 'cell_area': 1 infinite values \(first at lat {lat}, lon {lon}\)")
    _group(twin_copy, "grid")["cell_area"][5, 6] = 1e9
    _group(twin_copy, "sites")["NEE"][2, 9] = -np.inf
    open_stores(twin_copy)  # structure is fine; the big variables' values are checked deep
    _expect(twin_copy, "sites", r"variable 'NEE': 1 infinite values", deep=True)


def test_nan_where_none_allowed_big_variable_found_by_deep_check(twin_copy):
    _group(twin_copy, "drivers")["Tair"][5, 7] = np.nan
    open_stores(twin_copy)  # structure is fine; values are checked deep
    _expect(twin_copy, "drivers", r"variable 'Tair': 1 NaN values where none is allowed", deep=True)


def test_values_out_of_range(twin_copy):
    _group(twin_copy, "drivers")["AMP_Band4"][0] = 3.5
    _expect(twin_copy, "drivers", r"variable 'AMP_Band4': values out of range \[0, 1\].*max 3.5", deep=True)
    _group(twin_copy, "sites")["fold"][0] = 12
    _expect(twin_copy, "sites", r"variable 'fold': values out of range \[0, 9\]")


def test_duplicated_site_ids(twin_copy):
    g = _group(twin_copy, "sites")
    ids = g["site"][:]
    g["site"][1] = ids[0]
    _expect(twin_copy, "sites", rf"variable 'site': duplicated site ids: {ids[0]}")


def test_unknown_region_ids(twin_copy):
    _group(twin_copy, "grid")["region"][10, 10] = 42
    _expect(twin_copy, "grid", r"variable 'region': values out of range \[-1, 17\]")


def test_time_axis_gap_and_duplicate(twin_copy):
    t = _group(twin_copy, "drivers")["time"]
    vals = t[:]
    t[100] = vals[99]
    _expect(twin_copy, "drivers", r"variable 'time': time axis is duplicated 2001-04-10")
    t[100:] = vals[100:] + 1
    _expect(twin_copy, "drivers", r"variable 'time': daily time axis has a gap after 2001-04-10")


def test_site_outside_its_cell(twin_copy):
    _group(twin_copy, "sites")["lat"][0] = 89.0
    _expect(twin_copy, "sites", r"variable 'lat': site \S+ at \(89.000, .*\) is not inside land cell")


def test_missing_store_and_unfinished_write(twin_copy):
    p = store_path(twin_copy, "fire")
    p.rename(p.with_name("fire.zarr.partial"))
    _expect(twin_copy, "fire", r"store not found \(an unfinished write")


def test_wrong_store_kind(twin_copy):
    with pytest.raises(StoreError, match=r"is a 'prior' store, expected 'grid'"):
        open_store(store_path(twin_copy, "prior"), "grid")


def test_not_a_zarr_store(tmp_path):
    (tmp_path / "grid.zarr").mkdir()
    (tmp_path / "grid.zarr" / "junk.txt").write_text("x")
    with pytest.raises(StoreError, match=r"grid.zarr: not a readable Zarr group"):
        open_store(tmp_path / "grid.zarr")


def test_monthly_axis_must_be_month_starts(twin_copy):
    t = _group(twin_copy, "prior")["time"]
    t[3] = t[3] + 14  # mid-April instead of 1 April
    _expect(twin_copy, "prior", r"variable 'time': monthly time axis must hold consecutive month starts")


def test_plain_xarray_opens_every_store_quietly(tiny_twin):
    import warnings

    import xarray as xr

    ours = open_stores(tiny_twin)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name, ds in ours.items():
            plain = xr.open_zarr(store_path(tiny_twin, name))
            assert set(plain.data_vars) == set(ds.data_vars), name
    np.testing.assert_array_equal(xr.open_zarr(store_path(tiny_twin, "truth")).NEE.values, ours["truth"].NEE.values)
    assert xr.open_zarr(store_path(tiny_twin, "drivers")).time.attrs["standard_name"] == "time"


@pytest.mark.parametrize("damage", ["empty", "flipped header", "64 bytes flipped inside"])
def test_a_chunk_that_cannot_be_decoded_is_named_by_the_deep_check(twin_copy, damage):
    """An emptied, header-flipped or body-flipped chunk file of drivers' WAI2: the deep check
    (what `fluxscale validate` and `run` do) names the store, the variable and the chunk key.
    A flip inside the compressed body decodes to other values; the chunk's CRC-32C (every
    array fluxscale writes carries one) is what catches it."""
    base = store_path(twin_copy, "drivers") / "WAI2" / "c"
    victim = sorted(p for p in base.rglob("*") if p.is_file())[-1]
    raw = bytearray(victim.read_bytes())
    if damage == "empty":
        raw = bytearray()
    elif damage == "flipped header":
        raw[:16] = bytes(b ^ 0xFF for b in raw[:16])
    else:
        mid = len(raw) // 2
        raw[mid:mid + 64] = bytes(b ^ 0x01 for b in raw[mid:mid + 64])
    victim.write_bytes(bytes(raw))
    key = "c/" + "/".join(victim.relative_to(base).parts)
    with pytest.raises(StoreError) as e:
        open_store(store_path(twin_copy, "drivers"), "drivers", deep=True)
    msg = str(e.value)
    assert "drivers.zarr" in msg and "'WAI2'" in msg and f"cannot decode chunk {key}" in msg, msg
    if damage == "64 bytes flipped inside":
        assert "CRC-32C checksum does not match" in msg
