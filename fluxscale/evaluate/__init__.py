"""Evaluation against the truth and the observations: metrics, tables, figures, the report.

The stores are opened once (:mod:`~fluxscale.evaluate.data`); :mod:`~fluxscale.evaluate.collect`
gathers the evaluation data from them, :mod:`~fluxscale.evaluate.tables` the tables and the
checks, :mod:`~fluxscale.evaluate.baselines` the simple alternatives and
:mod:`~fluxscale.evaluate.scorecard` every product and baseline scored at every scale, :mod:`~fluxscale.evaluate.figures` the figures, :mod:`~fluxscale.evaluate.report` the
HTML report and the stage's entry :func:`~fluxscale.evaluate.report.evaluate`."""

from fluxscale.evaluate.collect import ENSEMBLE_LABELS, evaluation_data
from fluxscale.evaluate.scorecard import (METRICS, default_product, scorecard, scorecard_checks, scorecard_summary,
                                          scorecard_wide)
from fluxscale.evaluate.tables import (
    MODELS,
    TABLE_TITLES,
    annual_complete,
    consistency_checks,
    evaluation_tables,
    markdown_table,
    pivot_tables,
    science_checks,
    summary_dict,
    table_value,
    write_tables,
)
from fluxscale.evaluate.towers import pft_composition, pft_labels, site_scores, tropical_sites

__all__ = [
    "ENSEMBLE_LABELS",
    "METRICS",
    "scorecard",
    "scorecard_wide",
    "scorecard_checks",
    "scorecard_summary",
    "default_product",
    "MODELS",
    "evaluation_data",
    "evaluation_tables",
    "write_tables",
    "summary_dict",
    "markdown_table",
    "pivot_tables",
    "science_checks",
    "consistency_checks",
    "table_value",
    "annual_complete",
    "TABLE_TITLES",
    "pft_labels",
    "pft_composition",
    "site_scores",
    "tropical_sites",
]
