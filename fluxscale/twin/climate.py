"""Twin kernels: the synthetic climate and the ten drivers (numpy only, no I/O).

Everything here is a deterministic function of the seed and of each cell's
(lat, lon, global cell index), so any block of cells, in any order, gets the same
values: the twin does not depend on its chunk plan. Large-scale weather comes from
coarse seeded fields interpolated to the cells; local weather from a random stream
per cell.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.signal import lfilter

from fluxscale.dataset.drivers import day_of_year_index

# Stream ids of the seeded random draws (kept apart so that knobs don't shift others).
S_FIELD_T, S_FIELD_WET, S_FIELD_CAP, S_FIELD_HET, S_FIELD_CONT = 1, 2, 3, 4, 5
S_COARSE_T, S_COARSE_W, S_LOCAL_T, S_LOCAL_W, S_ENSO = 10, 11, 12, 13, 14

_COARSE_DEG = 10.0


def _interp_weights(lat: np.ndarray, lon: np.ndarray, step_deg: float) -> sparse.csr_matrix:
    """Bilinear weights (cells × coarse nodes) on a coarse lat/lon lattice that includes
    the poles and is periodic in longitude."""
    nlat = int(round(180 / step_deg)) + 1
    nlon = int(round(360 / step_deg))
    y = (np.asarray(lat) + 90.0) / step_deg
    x = ((np.asarray(lon) + 180.0) % 360.0) / step_deg
    i0 = np.clip(np.floor(y).astype(int), 0, nlat - 2)
    j0 = np.floor(x).astype(int) % nlon
    fy, fx = y - i0, x - np.floor(x)
    j1 = (j0 + 1) % nlon
    rows = np.repeat(np.arange(y.size), 4)
    cols = np.stack([i0 * nlon + j0, i0 * nlon + j1, (i0 + 1) * nlon + j0, (i0 + 1) * nlon + j1], axis=1).ravel()
    w = np.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx], axis=1).ravel()
    return sparse.csr_matrix((w, (rows, cols)), shape=(y.size, nlat * nlon))


def smooth_field(seed: int, stream: int, lat: np.ndarray, lon: np.ndarray, scale_deg: float = 15.0) -> np.ndarray:
    """A smooth random field of unit variance (approximately), bilinear on a seeded
    coarse lattice of spacing ``scale_deg``; a pure function of (seed, stream, lat, lon)."""
    nlat = int(round(180 / scale_deg)) + 1
    nlon = int(round(360 / scale_deg))
    nodes = np.random.default_rng([seed, stream]).standard_normal(nlat * nlon)
    return (_interp_weights(lat, lon, scale_deg) @ nodes) / 0.70  # bilinear mixing shrinks sd to ~0.7


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def cell_climate(seed: int, lat: np.ndarray, lon: np.ndarray) -> dict[str, np.ndarray]:
    """Static climate of cells: mean temperature (°C), seasonal half-amplitude (°C),
    wetness (0–1), bucket capacity (mm), monsoon strength, heterogeneity field, the
    phase of the seasons (day of year of the warm peak)."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    absl = np.abs(lat)
    cont = smooth_field(seed, S_FIELD_CONT, lat, lon, 20.0)
    t_mean = 26.0 - 0.0055 * absl**2 - 0.12 * absl + 2.5 * smooth_field(seed, S_FIELD_T, lat, lon, 12.0)
    t_amp = (1.5 + 14.0 * np.minimum(absl / 60.0, 1.3) ** 1.5) * np.clip(1.0 + 0.25 * cont, 0.5, 1.5)
    wet = (0.75 * np.exp(-((lat / 12.0) ** 2)) + 0.55 * np.exp(-(((absl - 50.0) / 15.0) ** 2)) + 0.15
           + 0.22 * smooth_field(seed, S_FIELD_WET, lat, lon, 10.0))
    wet = np.clip(wet, 0.03, 1.0)
    cap = np.clip(200.0 + 60.0 * smooth_field(seed, S_FIELD_CAP, lat, lon, 15.0), 80.0, 350.0)
    return {
        "lat": lat, "lon": lon, "t_mean": t_mean, "t_amp": t_amp, "wet": wet, "cap": cap,
        "monsoon": 0.6 * np.exp(-(((absl - 12.0) / 10.0) ** 2)),
        "peak": np.where(lat >= 0, 200.0, 17.0),
        "het": smooth_field(seed, S_FIELD_HET, lat, lon, 8.0),
        "trop": np.exp(-((lat / 20.0) ** 2)),
    }


def enso_tele_water(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Drying (positive) of the water index per unit ENSO index: Amazon, maritime
    continent and Australia dry in El Niño, East Africa gets wetter."""
    trop = np.exp(-((np.asarray(lat) / 20.0) ** 2))
    return trop * (np.exp(-(((lon + 60.0) / 25.0) ** 2)) + np.exp(-(((lon - 125.0) / 30.0) ** 2))
                   - 0.5 * np.exp(-(((lon - 40.0) / 12.0) ** 2)) + 0.2)


def enso_index(seed: int, time: pd.DatetimeIndex) -> np.ndarray:
    """Daily ENSO-like index (unit sd): a monthly AR(1) (ρ = 0.85), linearly interpolated."""
    months = pd.date_range(time[0].replace(day=1) - pd.DateOffset(months=1),
                           time[-1].replace(day=1) + pd.DateOffset(months=2), freq="MS")
    rng = np.random.default_rng([seed, S_ENSO])
    e = lfilter([1.0], [1.0, -0.85], rng.standard_normal(months.size + 60))[60:]
    e = (e - e.mean()) / e.std()
    mid = months + pd.Timedelta(days=14)
    return np.interp(time.asi8, mid.asi8, e)


def _coarse_ar1(seed: int, stream: int, ndays: int, rho: float) -> np.ndarray:
    nlat = int(round(180 / _COARSE_DEG)) + 1
    nlon = int(round(360 / _COARSE_DEG))
    rng = np.random.default_rng([seed, stream])
    z = rng.standard_normal((ndays + 50, nlat * nlon), dtype=np.float32)
    z = lfilter([np.sqrt(1 - rho**2)], [1.0, -rho], z, axis=0)[50:]
    return z.astype(np.float32)


def _local_ar1(seed: int, stream: int, cells: np.ndarray, ndays: int, rho: float) -> np.ndarray:
    out = np.empty((ndays + 30, cells.size), dtype=np.float32)
    for k, c in enumerate(cells):
        out[:, k] = np.random.default_rng([seed, stream, int(c)]).standard_normal(ndays + 30, dtype=np.float32)
    return lfilter([np.sqrt(1 - rho**2)], [1.0, -rho], out, axis=0)[30:].astype(np.float32)


def potential_radiation(doy: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Daily top-of-atmosphere radiation (FAO-56 Eq. 21), MJ m-2 d-1; (doy, cells)."""
    j = np.asarray(doy, dtype=np.float64)[:, None]
    phi = np.deg2rad(np.asarray(lat))[None, :]
    dr = 1 + 0.033 * np.cos(2 * np.pi * j / 365)
    delta = 0.409 * np.sin(2 * np.pi * j / 365 - 1.39)
    ws = np.arccos(np.clip(-np.tan(phi) * np.tan(delta), -1.0, 1.0))
    return (24 * 60 / np.pi) * 0.0820 * dr * (ws * np.sin(phi) * np.sin(delta) + np.cos(phi) * np.cos(delta) * np.sin(ws))


def seasonal_climatology(clim: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Noise-free seasonal cycles on doy 1…366, (366, cells): temperature (°C), water
    fraction (0–1), Rpot and Rg (MJ m-2 d-1), NDVI, EVI, fAPAR, LSTs (K), NDWI, plus
    the 10 drivers' seasonal and static forms."""
    doy = np.arange(1, 367, dtype=np.float64)
    ang = 2 * np.pi * (doy[:, None] - clim["peak"][None, :]) / 365.25
    t_clim = clim["t_mean"][None, :] + clim["t_amp"][None, :] * np.cos(ang)
    extrat = np.clip((np.abs(clim["lat"]) - 25.0) / 20.0, 0.0, 1.0)[None, :]
    w_season = 1.0 + clim["monsoon"][None, :] * np.cos(ang) - 0.25 * extrat * np.cos(ang)
    wfrac = np.clip(clim["wet"][None, :] * w_season, 0.02, 1.0)
    rpot = potential_radiation(doy, clim["lat"])
    rg = (0.75 - 0.25 * wfrac) * rpot
    g = sigmoid((t_clim - 3.0) / 3.0) * (wfrac / (wfrac + 0.15))
    ndvi_max = 0.2 + 0.65 * clim["wet"][None, :] ** 0.6
    ndvi = 0.08 + (ndvi_max - 0.08) * g
    evi = np.clip(0.65 * ndvi - 0.02, 0.0, None)
    fapar = np.clip(1.25 * ndvi - 0.1, 0.0, 0.95)
    lst_day = 273.15 + t_clim + 4.0 + 12.0 * (1.0 - wfrac) * (rpot / 40.0)
    lst_night = 273.15 + t_clim - 3.0 - 4.0 * (1.0 - clim["wet"][None, :])
    ndwi = -0.25 + 0.7 * wfrac * (0.3 + 0.7 * g)
    band4 = 0.05 + 0.08 * (1.0 - g) * (1.0 - 0.5 * clim["wet"][None, :])
    return {
        "t_clim": t_clim, "wfrac": wfrac, "rpot": rpot, "rg": rg, "fapar": fapar, "ndvi": ndvi,
        "MSC_EVIRpot": evi * rg, "MSC_FparLST": fapar * lst_day, "MSC_LST_Night": lst_night, "Rg_VIMSC": ndvi * rpot,
        "MIN_MSC_NDWI": ndwi.min(axis=0), "AMP_Band4": band4.max(axis=0) - band4.min(axis=0),
        "AMP_MSC_NDVI": ndvi.max(axis=0) - ndvi.min(axis=0),
        "AMP_MSC_WAI": clim["cap"] * (wfrac.max(axis=0) - wfrac.min(axis=0)),
    }


def daily_weather(seed: int, clim: dict[str, np.ndarray], seas: dict[str, np.ndarray], cells: np.ndarray,
                  time: pd.DatetimeIndex, enso: np.ndarray, *, enso_amplitude: float, weather_sd_tair: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Daily ``Tair`` (°C) and ``WAI2`` (mm), float32 (days, cells).

    Seasonal climatology + large-scale (coarse AR(1) fields) and local (per-cell AR(1))
    weather + an ENSO mode (warm and, in the teleconnected tropics, dry when positive).
    """
    nd = time.size
    didx = day_of_year_index(time)
    W = _interp_weights(clim["lat"], clim["lon"], _COARSE_DEG)
    coarse_t = (W @ _coarse_ar1(seed, S_COARSE_T, nd, 0.7).T).T
    coarse_w = (W @ _coarse_ar1(seed, S_COARSE_W, nd, 0.97).T).T
    local_t = _local_ar1(seed, S_LOCAL_T, cells, nd, 0.6)
    local_w = _local_ar1(seed, S_LOCAL_W, cells, nd, 0.9)
    sd_t = weather_sd_tair * (0.4 + 0.6 * np.minimum(np.abs(clim["lat"]) / 45.0, 1.3))
    e = enso[:, None] * enso_amplitude
    tair = (seas["t_clim"][didx] + sd_t[None, :] * (0.75 * coarse_t / 0.7 + 0.6 * local_t)
            + 0.6 * clim["trop"][None, :] * e)
    tele = enso_tele_water(clim["lat"], clim["lon"])
    wfrac = seas["wfrac"][didx] + 0.08 * (0.5 * coarse_w / 0.7 + 0.6 * local_w) - 0.12 * tele[None, :] * e
    wai = clim["cap"][None, :] * np.clip(wfrac, 0.0, 1.0)
    return tair.astype(np.float32), wai.astype(np.float32)
