"""Where the project's own files are: the repository root (``conf/``, ``experiments/``) and the shipped assets.

cft-lab is installed editable (``pip install -e .``), as research code usually is, so the YAML it composes is the
YAML you read and edit in the checkout.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
CONF_DIR = REPO_ROOT / "conf"
EXPERIMENTS_DIR = REPO_ROOT / "experiments"
ASSETS_DIR = PACKAGE_DIR / "assets"
TESTBED_ASSETS = ASSETS_DIR / "testbed"


def check_checkout() -> None:
    """Fail early, and say why, when the package is installed without its checkout (non-editable install)."""
    if not CONF_DIR.is_dir() or not EXPERIMENTS_DIR.is_dir():
        raise RuntimeError(
            f"cft-lab expects its config folders at {CONF_DIR} and {EXPERIMENTS_DIR}; "
            "install it editable from a checkout: `pip install -e .`"
        )


def resolve_repo_path(path: str) -> Path:
    """A path from a config: absolute as given, else relative to the current directory if it exists there,
    else relative to the repository root (so `conf/deepspeed/zero3.json` works from anywhere)."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p.resolve()
    return (REPO_ROOT / p).resolve()
