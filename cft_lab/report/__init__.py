"""Views of the run store: paper tables and experiment tracking.

* :mod:`.frames`: cell results -> pandas frames in the paper's layouts (AVG and Δ the paper's way, its own numbers);
* :mod:`.render`: frames -> md / csv / tex / png; :mod:`.tables`: ``python -m cft_lab.report.tables <table>``
  renders a table from the store; :mod:`.callback`: the Hydra callback that renders a sweep's table when it ends;
* :mod:`.tracking`: the W&B and no-op loggers, the run ids and the keys a cell logs;
* :mod:`.dashboard`: ``python -m cft_lab dashboard <table>``, a table's W&B view (:mod:`.view`), its per-item and
  paired comparison files (:mod:`.items`) and a local picture of it (:mod:`.picture`).

The names below are the frames-and-rendering API.
"""

from cft_lab.report.frames import (
    AVG,
    CSV_COLUMNS,
    DELTA_LABEL,
    METHOD_LABELS,
    METHOD_ORDER,
    PAPER_TABLES,
    SFT_METHODS,
    SFT_VERIFIED_COLUMN,
    BenchScore,
    CellResult,
    align_paper,
    approx_target,
    ci_bounds,
    paper_frame,
    recompute,
    table2_frame,
    table6_frame,
    table7_frame,
)
from cft_lab.report.render import write_table

__all__ = [
    "AVG",
    "CSV_COLUMNS",
    "DELTA_LABEL",
    "METHOD_LABELS",
    "METHOD_ORDER",
    "PAPER_TABLES",
    "SFT_METHODS",
    "SFT_VERIFIED_COLUMN",
    "BenchScore",
    "CellResult",
    "align_paper",
    "approx_target",
    "ci_bounds",
    "paper_frame",
    "recompute",
    "table2_frame",
    "table6_frame",
    "table7_frame",
    "write_table",
]
