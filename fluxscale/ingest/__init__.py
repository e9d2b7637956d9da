"""Real data: the files carbon-cycle scientists have → fluxscale's stores.

* :func:`read_fluxnet_daily`, :func:`read_site_table`: FLUXNET2015 daily CSVs and the
  tower table (:mod:`fluxscale.ingest.fluxnet`);
* :func:`read_monthly_flux`, :func:`read_daily_driver`, :func:`read_seasonal_driver`,
  :func:`read_static_driver`: gridded NetCDF (FLUXCOM, GCB inversions, GFAS fire,
  drivers) normalised in grid, time and units (:mod:`fluxscale.ingest.gridded`); the
  region mask is read by :func:`fluxscale.grid.read_region_mask`;
* :func:`ingest`: ``fluxscale ingest CONFIG`` (:mod:`fluxscale.ingest.build`).

The config layout is in ``docs/ingest.md`` and :func:`fluxscale.config.load_ingest_config`.
"""

from .build import IngestReport, ingest
from .fluxnet import read_fluxnet_daily, read_site_table
from .gridded import read_daily_driver, read_monthly_flux, read_seasonal_driver, read_static_driver

__all__ = ["ingest", "IngestReport", "read_fluxnet_daily", "read_site_table", "read_monthly_flux",
           "read_daily_driver", "read_seasonal_driver", "read_static_driver"]
