"""Performance scripts (speed and throughput, not evaluation benchmarks): each prints figures measured on this
machine, with what the inputs were. ``python -m cft_lab.perf.grading``, ``python -m cft_lab.perf.teacher``,
``python -m cft_lab.perf.generation`` (``--help`` on each)."""
