"""Hydra search-path plugin: puts the repository's ``experiments/`` folder (paper rows and table sweeps) next to
``conf/``, so ``method=cft`` and ``table=table2`` resolve from the CLI and from the compose API alike.

Hydra discovers any module under the ``hydra_plugins`` namespace package; this one only appends a path.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from cft_lab.paths import EXPERIMENTS_DIR


class CftLabSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="cft-lab-experiments", path=f"file://{EXPERIMENTS_DIR}")
