"""Stages 3-5, select -> infer -> grade, and everything they use.

* :mod:`.benchmarks`: the benchmark registry (items, golds, prompts) and :mod:`.benchmarks.files`, the shipped files;
* :mod:`.generation`: the ``hf`` and ``vllm`` generation backends behind one interface;
* :mod:`.engine`: resumable generation of a benchmark, grading in every mode, aggregation, provenance;
* :mod:`.grading`: the three graders (paper, strict, math_verify) with process-level timeouts;
* :mod:`.metrics`: CIs, pass@k / maj@k, the paired test; :mod:`.compare`: ``python -m cft_lab.eval.compare A B``;
* :mod:`.critique_probe`: the model's own critiques scored against known truth; :mod:`.stage`: the three stages.
"""
