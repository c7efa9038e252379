"""Stage 2, train: the objective registry and the one training path every arm shares.

* :mod:`.objectives`: the objectives (base, sft, sft_verified, sft_teacher, cft) as one registry, and how a record
  becomes each arm's {prompt, completion} pair;
* :mod:`.tokenize`: exact loss masks and the paper's truncation rule, with counts per arm;
* :mod:`.trainer`: TRL's SFTTrainer in process or under torchrun / DeepSpeed; :mod:`.modeling`: loading models and
  tokenizers; :mod:`.stage`: the train stage.
"""
