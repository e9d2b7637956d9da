import numpy as np
import pandas as pd

from fluxscale.dataset.drivers import DRIVER_NAMES, assemble_driver_block, driver_block
from fluxscale.dataset.stores import open_store, store_path


def test_table_a2_order():
    assert DRIVER_NAMES == ("WAI2", "MSC_EVIRpot", "MSC_FparLST", "MIN_MSC_NDWI", "AMP_Band4", "MSC_LST_Night",
                            "Rg_VIMSC", "AMP_MSC_NDVI", "Tair", "AMP_MSC_WAI")


def test_block_equals_naive_lookup(tiny_twin):
    ds = open_store(store_path(tiny_twin, "drivers"))
    mem = ds.load()
    rng = np.random.default_rng(1)
    t = np.sort(rng.choice(ds.sizes["time"], 50, replace=False))
    c = np.sort(rng.choice(ds.sizes["cell"], 40, replace=False))
    block = assemble_driver_block(ds, t, c)
    assert block.shape == (50, 40, 10) and block.dtype == np.float32
    # independent reference: per element, pick by calendar day of year / by name
    for a, ti in enumerate(t[:10]):
        doy = pd.Timestamp(mem.time.values[ti]).day_of_year
        for b, ci in enumerate(c[:10]):
            for k, name in enumerate(DRIVER_NAMES):
                v = mem[name]
                if "time" in v.dims:
                    ref = v.isel(time=ti, cell=ci)
                elif "doy" in v.dims:
                    ref = v.sel(doy=doy).isel(cell=ci)
                else:
                    ref = v.isel(cell=ci)
                assert block[a, b, k] == np.float32(ref), (name, ti, ci)
    # contiguous slices give the same as index arrays
    np.testing.assert_array_equal(assemble_driver_block(ds, slice(10, 20), slice(5, 9)),
                                  assemble_driver_block(ds, np.arange(10, 20), np.arange(5, 9)))
    labelled = driver_block(ds, slice(0, 3), slice(0, 2))
    assert labelled.dims == ("time", "cell", "driver") and list(labelled.driver.values) == list(DRIVER_NAMES)


def test_leap_day_uses_doy_60(tiny_twin):
    ds = open_store(store_path(tiny_twin, "drivers"))
    # 2001 is not a leap year: 1 March is day 60
    i = int(np.flatnonzero(ds.time.values == np.datetime64("2001-03-01"))[0])
    blk = assemble_driver_block(ds, [i], [0])
    k = DRIVER_NAMES.index("MSC_EVIRpot")
    assert blk[0, 0, k] == np.float32(ds.MSC_EVIRpot.sel(doy=60).isel(cell=0))
