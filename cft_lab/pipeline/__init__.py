"""The spine: how one config becomes one cell, run stage by stage through the content-addressed run store.

* :mod:`.plan`: which stages a cell needs and the cache key of each artefact (pure: reads the config only);
* :mod:`.store`: the run store's layout (its docstring is the one description of it) and ``Store.claim``, the one way
  a stage claims, builds, completes and resumes an artefact;
* :mod:`.cell`: ``run_cell``, the stages in order (``cft_lab.data.stage``, ``cft_lab.train.stage``,
  ``cft_lab.eval.stage``), preflight checks and the cell's ``result.json``.
"""
