"""Real data: the files carbon-cycle scientists have → fluxscale's stores.

* :func:`read_fluxnet_daily`, :func:`read_site_table`: a tower's daily record from any
  tower file read (FLUXNET2015, AmeriFlux-FLUXNET, FLUXNET 2025, ICOS ETC L2; daily, or
  half-hourly/hourly aggregated to days: :mod:`fluxscale.ingest.fluxnet`,
  :mod:`~fluxscale.ingest.towernames`, :mod:`~fluxscale.ingest.subdaily`) and the tower
  table; :func:`read_site_metadata`: coordinates and IGBP class from BIF / SITEINFO files
  (:mod:`fluxscale.ingest.sitemeta`);
* :func:`read_monthly_flux`, :func:`read_daily_driver`, :func:`read_seasonal_driver`,
  :func:`read_static_driver`: gridded NetCDF (FLUXCOM, GCB inversions, GFAS fire,
  drivers) normalised in grid, time and units (:mod:`fluxscale.ingest.gridded`); the
  region mask is read by :func:`fluxscale.dataset.grid.read_region_mask`;
* :func:`read_xbase_nee`: a FLUXCOM-X-BASE NEE Zarr cube (hourly, daily or monthly) as
  the prior's monthly means on the model grid (:mod:`fluxscale.ingest.xbase`);
* :func:`choose_members`, :func:`member_names`: GCB inversion members by name, the paper's
  five by default, all-NaN members refused or skipped (:mod:`fluxscale.ingest.gcb`);
* :func:`ingest`: ``fluxscale ingest CONFIG`` (:mod:`fluxscale.ingest.build`).

The config layout is in ``docs/ingest.md`` and :func:`fluxscale.config.load_ingest_config`.
"""

from fluxscale.ingest.build import IngestReport, ingest
from fluxscale.ingest.fluxnet import read_fluxnet_daily, read_site_table
from fluxscale.ingest.sitemeta import read_site_metadata
from fluxscale.ingest.towernames import parse_tower_name
from fluxscale.ingest.gcb import PAPER_SYSTEMS, choose_members, member_names
from fluxscale.ingest.gridded import read_daily_driver, read_monthly_flux, read_seasonal_driver, read_static_driver
from fluxscale.ingest.xbase import read_xbase_nee

__all__ = ["ingest", "IngestReport", "read_fluxnet_daily", "read_site_table", "read_site_metadata",
           "parse_tower_name", "read_monthly_flux",
           "read_daily_driver", "read_seasonal_driver", "read_static_driver", "read_xbase_nee",
           "choose_members", "member_names", "PAPER_SYSTEMS"]
