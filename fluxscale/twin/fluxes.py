"""Twin kernels: the true NEE = Reco − GPP as a nonlinear function of the drivers plus
spatial heterogeneity (numpy only, no I/O).

GPP = LUE · fAPAR · Rg · f(T) · f(W) (light-use efficiency); Reco = R_base(cell) ·
Q10^((T−15)/10) · (0.3 + 0.7 f(W)). R_base is set per cell so that, over the record,
mean NEE = −s(cell) · mean GPP: s is the sink fraction, weak in the tropics and
modulated by a smooth random field that no driver explains. Units gC m-2 d-1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fluxscale.config import TwinConfig
from fluxscale.dataset.drivers import day_of_year_index
from fluxscale.twin.climate import sigmoid, cell_climate, daily_weather, seasonal_climatology

LUE = 0.5  # gC MJ-1 (global GPP ≈ 120 PgC yr-1)
Q10 = 1.6
SINK_CAP = 0.6


def gpp_and_resp_factor(tair: np.ndarray, wai: np.ndarray, fapar: np.ndarray, rg: np.ndarray, cap: np.ndarray,
                        lue_factor: np.ndarray | float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """GPP (gC m-2 d-1) and the dimensionless respiration factor; arrays (days, cells)."""
    f_t = np.exp(-(((tair - 24.0) / 14.0) ** 2)) * sigmoid((tair + 2.0) / 2.0)
    wf = wai / cap[None, :]
    f_w = 1.12 * wf / (wf + 0.12)
    gpp = LUE * lue_factor * fapar * rg * f_t * f_w
    rf = Q10 ** ((tair - 15.0) / 10.0) * (0.3 + 0.7 * f_w)
    return gpp, rf


def sink_shape(cfg: TwinConfig, clim: dict[str, np.ndarray]) -> np.ndarray:
    """Relative sink fraction per cell before the global scaling (dimensionless)."""
    extra = sigmoid((np.abs(clim["lat"]) - 22.0) / 4.0)
    lat_shape = cfg.tropical_sink_fraction + (1.0 - cfg.tropical_sink_fraction) * extra
    h = cfg.heterogeneity
    return lat_shape * np.exp(h * clim["het"] - 0.5 * h * h)


def climatological_gpp(cfg: TwinConfig, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Mean GPP of each cell under its noise-free climatology, gC m-2 d-1 (for the
    global sink calibration)."""
    clim = cell_climate(cfg.seed, lat, lon)
    seas = seasonal_climatology(clim)
    wai = seas["wfrac"] * clim["cap"][None, :]
    gpp, _ = gpp_and_resp_factor(seas["t_clim"], wai, seas["fapar"], seas["rg"], clim["cap"])
    return gpp[:365].mean(axis=0)


def _lue_trend(cfg: TwinConfig, time: pd.DatetimeIndex) -> np.ndarray:
    mid = 0.5 * (cfg.start_year + cfg.end_year + 1)
    years = time.year.to_numpy() + (time.day_of_year.to_numpy() - 0.5) / 365.25
    return (1.0 + cfg.gpp_trend_per_year * (years - mid)).astype(np.float32)[:, None]


def simulate_cells(cfg: TwinConfig, lat: np.ndarray, lon: np.ndarray, cells: np.ndarray, time: pd.DatetimeIndex,
                   enso: np.ndarray, sink_scale: float) -> dict[str, np.ndarray]:
    """Drivers and true fluxes of a set of land cells over the whole record.

    Parameters
    ----------
    lat, lon : (n,) cell centres, degrees; cells : (n,) global land-cell indices
        (seed the per-cell weather); time : daily dates; enso : (days,) index;
    sink_scale : global factor s0 of the sink fraction (from calibration).

    Returns
    -------
    dict
        ``Tair``, ``WAI2``, ``GPP``, ``Reco``, ``NEE`` float32 (days, n); the four
        seasonal drivers (366, n) and four static drivers (n,), float32.
    """
    clim = cell_climate(cfg.seed, lat, lon)
    seas = seasonal_climatology(clim)
    tair, wai = daily_weather(cfg.seed, clim, seas, cells, time, enso,
                              enso_amplitude=cfg.enso_amplitude, weather_sd_tair=cfg.weather_sd_tair)
    didx = day_of_year_index(time)
    fapar = seas["fapar"].astype(np.float32)[didx]
    rg = seas["rg"].astype(np.float32)[didx]
    gpp, rf = gpp_and_resp_factor(tair, wai, fapar, rg, clim["cap"].astype(np.float32), _lue_trend(cfg, time))
    del fapar, rg
    sink = np.minimum(sink_scale * sink_shape(cfg, clim), SINK_CAP)
    r_base = (1.0 - sink) * gpp.mean(axis=0, dtype=np.float64) / rf.mean(axis=0, dtype=np.float64)
    reco = (rf * r_base.astype(np.float32)[None, :]).astype(np.float32)
    out = {"Tair": tair, "WAI2": wai, "GPP": gpp.astype(np.float32), "Reco": reco,
           "NEE": (reco - gpp).astype(np.float32)}
    for n in ("MSC_EVIRpot", "MSC_FparLST", "MSC_LST_Night", "Rg_VIMSC",
              "MIN_MSC_NDWI", "AMP_Band4", "AMP_MSC_NDVI", "AMP_MSC_WAI"):
        out[n] = seas[n].astype(np.float32)
    return out


def night_bias_fraction(cfg: TwinConfig, lat: np.ndarray) -> np.ndarray:
    """Fraction of Reco missed by towers at latitude ``lat``: ``night_bias_tropics``
    within 20° of the equator, ``night_bias_extratropics`` beyond 30°, linear between."""
    w = np.clip((np.abs(np.asarray(lat)) - 20.0) / 10.0, 0.0, 1.0)
    return cfg.night_bias_tropics * (1 - w) + cfg.night_bias_extratropics * w
