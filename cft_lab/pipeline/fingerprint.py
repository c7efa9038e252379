"""Content fingerprints of the local inputs a cache key depends on (``cft_lab.pipeline.plan``).

A key hashes the config, and a config names a local file or folder only by its path: edit the file and the key
would stay, and a rerun would report "finished before" with the old records. So every local path an artefact reads
adds the sha256 of its content to the key: a file's own digest, a folder's manifest digest (every file's relative
path, size and sha256, ``.git`` left out), e.g. a local model directory. Hub ids and shipped testbed assets are not
local inputs in this sense (a hub id is pinned by its revision, a testbed base by its recipe), so the keys of every
hub and testbed cell are unchanged (``tests/test_cache_keys.py``).

Hashing reads every byte (a 15 GB local model folder takes a minute or so); digests are memoised per process by
(path, size, mtime), so a sweep that plans many cells over one file hashes it once.

>>> import tempfile, os
>>> d = tempfile.mkdtemp(); p = os.path.join(d, "a.jsonl"); _ = open(p, "w").write("x")
>>> fingerprint(p)[:12]
'sha256:2d711'
>>> fingerprint(os.path.join(d, "missing")) is None
True
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from cft_lab.config import Config

_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _MEMO:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _MEMO[memo] = h.hexdigest()
    return _MEMO[memo]


def dir_manifest(path: Path) -> list[tuple[str, int, str]]:
    """(relative path, size, sha256) of every file under ``path``, sorted; ``.git`` folders left out."""
    out = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in sorted(files):
            p = Path(root) / name
            if p.is_file():
                out.append((str(p.relative_to(path)), p.stat().st_size, file_sha256(p)))
    return out


def fingerprint(path: str | Path) -> Optional[str]:
    """``sha256:<hex>`` of a local file, or of a local folder's manifest; None when nothing is at ``path``."""
    p = Path(path).expanduser()
    if p.is_file():
        return "sha256:" + file_sha256(p)
    if p.is_dir():
        blob = "\n".join(f"{rel}\t{size}\t{sha}" for rel, size, sha in dir_manifest(p))
        return "manifest-sha256:" + hashlib.sha256(blob.encode("utf-8")).hexdigest()
    return None


def _local(path: Optional[str]) -> Optional[str]:
    return fingerprint(path) if path else None


def model_fingerprint(cfg: Config) -> Optional[str]:
    """The base model's content digest when ``model.path`` of a hub model is a local file or folder."""
    from cft_lab.options import ModelSource

    return _local(cfg.model.path) if cfg.model.source == ModelSource.hub else None


def data_inputs(cfg: Config, teacher_used: bool) -> dict[str, str]:
    """Content digests of the local inputs of the data stage, by the option that names them (empty: none)."""
    from cft_lab.options import ResponseKind, SourceKind, TeacherKind

    found: dict[str, Optional[str]] = {}
    src = cfg.data.source
    if src is not None:
        if src.kind != SourceKind.hub or Path(src.path).expanduser().exists():
            found["data.source.path"] = _local(src.path)
        files = src.data_files
        if files is not None:
            listed = [files] if isinstance(files, str) else list(files.values() if isinstance(files, dict) else files)
            for i, f in enumerate(listed):
                if isinstance(f, str):
                    found[f"data.source.data_files[{i}]"] = _local(f)
    if cfg.response_source.kind == ResponseKind.self_generated and cfg.response_source.model:
        found["response_source.model"] = _local(cfg.response_source.model)
    if teacher_used and cfg.teacher.kind in (TeacherKind.vllm, TeacherKind.hf):
        found["teacher.model"] = _local(cfg.teacher.model)
    return {k: v for k, v in found.items() if v is not None}


def deepspeed_fingerprint(cfg: Config) -> Optional[str]:
    """A DeepSpeed JSON outside the repository's ``conf/`` (a user's own file); the shipped ones are versioned with
    the code, and their path alone is in the key as before."""
    from cft_lab.paths import CONF_DIR, resolve_repo_path

    if not cfg.train.deepspeed:
        return None
    p = resolve_repo_path(cfg.train.deepspeed)
    return None if p.is_relative_to(CONF_DIR) else _local(str(p))
