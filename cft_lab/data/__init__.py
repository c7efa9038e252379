"""Stage 1, data: questions, noisy responses and the teacher's work on them, as one record set with matched ids.

* :mod:`.sources`: released, local and hub datasets -> records (bad rows named by file, line and field);
* :mod:`.responses`: responses sampled from a model (Table 6);
* :mod:`.records`: the one record type and its JSONL files; :mod:`.verdicts`: reading a critique's verdict;
* :mod:`.card`: the dataset card; :mod:`.stage`: the data stage itself (teachers come from ``cft_lab.teachers``).
"""
