"""The paper's figures (PNG, matplotlib's Agg backend: no display needed).

Each figure is one :class:`Figure` object (its drawing, file, title and caption together) in
a theme module: :mod:`~fluxscale.evaluate.figures.regional` (Figs. 2, 3, 4, C1, C3–C5),
:mod:`~fluxscale.evaluate.figures.maps` (Figs. 5, 6, 7, B2),
:mod:`~fluxscale.evaluate.figures.static` (Figs. A1, B3, B4) and
:mod:`~fluxscale.evaluate.figures.towers` (Figs. 8, 9, C2) and
:mod:`~fluxscale.evaluate.figures.scorecard` (Fig. S1, the scorecard). :func:`write_figures` draws
every figure whose inputs exist (:data:`FIGURES`, in the report's order) and returns
``({name: path}, {name: why skipped})``. Figs. 5–7 and B2 read :func:`evaluation_maps`;
Figs. A1, B3, B4 read :func:`static_data` (grid, PFT map, bridges); the figures drawn from a
table also write it beside the PNG (``fig9_sites.csv``, ``figA1_regions.csv``,
``figB3_pft_composition.csv``, ``figB4_pft_by_region.csv``, ``figC2_sites_by_pft.csv``).
:data:`CAPTIONS` gives each figure's caption in the report, :data:`TITLES` its heading.
"""

from fluxscale.evaluate.figures.fields import evaluation_maps, map_fields, static_data, static_fields
from fluxscale.evaluate.figures.figure import Figure, FigureInputs
from fluxscale.evaluate.figures.style import add_coastline, coastline
from fluxscale.evaluate.figures.write import CAPTIONS, FIGURES, TITLES, write_figures

__all__ = ["evaluation_maps", "static_data", "write_figures", "CAPTIONS", "TITLES", "coastline", "add_coastline",
           "FIGURES", "Figure", "FigureInputs", "map_fields", "static_fields"]
