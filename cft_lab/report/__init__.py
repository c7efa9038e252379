"""Paper tables from cell results: frames in the paper's layouts (``frames``) and their rendering (``render``).

The public names below are the whole API; ``cft_lab.report.tables`` uses them to render a table from the run store.
"""

from cft_lab.report.frames import (AVG, CSV_COLUMNS, DELTA_LABEL, METHOD_LABELS, METHOD_ORDER, PAPER_TABLES,
                                   SFT_METHODS, SFT_VERIFIED_COLUMN, BenchScore, CellResult, align_paper,
                                   approx_target, ci_bounds, paper_frame, recompute, table2_frame, table6_frame,
                                   table7_frame)
from cft_lab.report.render import write_table

__all__ = ["AVG", "CSV_COLUMNS", "DELTA_LABEL", "METHOD_LABELS", "METHOD_ORDER", "PAPER_TABLES", "SFT_METHODS",
           "SFT_VERIFIED_COLUMN", "BenchScore", "CellResult", "align_paper", "approx_target", "ci_bounds",
           "paper_frame", "recompute", "table2_frame", "table6_frame", "table7_frame", "write_table"]
