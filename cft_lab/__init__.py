"""cft-lab: SFT-vs-CFT ablations (Critique Fine-Tuning, arXiv 2501.17703) from one Hydra entrypoint."""

__version__ = "0.1.0"
