"""Reading a source's rows: local ``.jsonl`` / ``.json`` / ``.parquet`` files and hub datasets (see the package doc
for why JSON is read line by line with the standard library), and the pinning rule for hub datasets.

Every reader yields ``(where, position, row)``: ``where`` names the file and line (``path:12``) or row
(``path row 3``, ``<hub id>@<revision>[<config>]/<split> row 3``) for error messages; a row that cannot be read is
yielded as the :class:`~cft_lab.data.sources.SourceError` that says why, so ``on_error=skip`` can count it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from cft_lab.data.sources.errors import SourceError

if TYPE_CHECKING:
    from cft_lab.data.sources import SourceSpec

log = logging.getLogger(__name__)

PACKAGED_BUILDERS = ("json", "parquet", "csv", "arrow", "text")
_SHA = re.compile(r"[0-9a-f]{40}")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_Row = tuple[str, int, Any]  # (where, 0-based row position, row or a SourceError)


def _read_jsonl(path: Path, limit: Optional[int]) -> Iterator[_Row]:
    row = 0
    with open(path, "rb") as f:  # decoded line by line: a binary or mis-encoded line is located, and skippable
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue  # blank lines are not rows
            if limit is not None and row >= limit:
                return
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield (
                    where,
                    row,
                    SourceError(where, "<row>", "not UTF-8 text", f"byte {e.start} of the line: {e.reason}"),
                )
                row += 1
                continue
            try:
                yield where, row, json.loads(line)
            except json.JSONDecodeError as e:
                yield where, row, SourceError(where, "<row>", "invalid JSON", e.msg)
            row += 1


def _read_json(path: Path, limit: Optional[int]) -> Iterator[_Row]:
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    if not head.startswith(b"["):
        yield from _read_jsonl(path, limit)
        return
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SourceError(str(path), "<file>", "not UTF-8 text", f"byte {e.start}: {e.reason}") from None
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as e:
        raise SourceError(f"{path}:{e.lineno}", "<file>", "invalid JSON", e.msg) from None
    if not isinstance(rows, list):
        raise SourceError(str(path), "<file>", "not a JSON array", f"got {type(rows).__name__}")
    for i, r in enumerate(rows if limit is None else rows[:limit]):
        yield f"{path} row {i}", i, r


def _read_parquet(path: Path, limit: Optional[int]) -> Iterator[_Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise SourceError(str(path), "<file>", "not a Parquet file", str(e)[:200]) from None
    i = 0
    for batch in reader.iter_batches(batch_size=1024):
        for r in batch.to_pylist():
            if limit is not None and i >= limit:
                return
            yield f"{path} row {i}", i, r
            i += 1


def local_rows(spec: SourceSpec, prov: dict) -> Iterator[_Row]:
    path = Path(spec.path).expanduser()
    if path.is_dir():
        raise SourceError(spec.path, "path", "is a directory", "give a .jsonl, .json or .parquet file")
    if not path.is_file():
        raise FileNotFoundError(f"source {spec.kind}: no such file {spec.path}")
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_parquet}
    if path.suffix not in readers:
        raise ValueError(f"source {spec.path}: unknown file type {path.suffix!r}; use .jsonl, .json or .parquet")
    prov.update(path=str(path), sha256={str(path): sha256_file(path)})
    yield from readers[path.suffix](path, spec.limit)


def check_pinned(spec: SourceSpec) -> Optional[str]:
    """Refuse (or warn about) a hub source whose revision is not pinned; returns the warning, if any.

    >>> from cft_lab.data.sources import SourceSpec
    >>> check_pinned(SourceSpec(kind="hub", schema="metamathqa", path="json", data_files="x.jsonl")) is None
    True
    """
    if spec.path in PACKAGED_BUILDERS or Path(spec.path).is_dir():
        return None
    if spec.revision is None:
        if not spec.allow_unpinned:
            raise ValueError(
                f"source {spec.path}: hub datasets must be loaded at a pinned revision (a commit sha); set "
                f"data.source.revision=<sha>, or data.source.allow_unpinned=true to load whatever the hub serves "
                f"today (it can change)"
            )
        msg = f"source {spec.path}: loading an UNPINNED hub revision; the data can change under the same config"
    elif not _SHA.fullmatch(spec.revision):
        msg = f"source {spec.path}: revision {spec.revision!r} is not a commit sha; a branch or tag can move"
    else:
        return None
    log.warning(msg)
    return msg


def hub_rows(spec: SourceSpec, prov: dict) -> Iterator[_Row]:
    import datasets

    warning = check_pinned(spec)
    ds = datasets.load_dataset(
        spec.path,
        spec.config_name,
        revision=spec.revision,
        split=spec.split,
        data_files=spec.data_files,
        cache_dir=spec.cache_dir,
    )
    local = []
    if Path(spec.path).is_dir():
        local = sorted(p for p in Path(spec.path).rglob("*") if p.is_file())
    elif spec.data_files is not None:
        files = [spec.data_files] if isinstance(spec.data_files, str) else list(spec.data_files)
        local = [Path(f) for f in files if Path(f).is_file()]
    prov.update(
        path=spec.path,
        config_name=spec.config_name,
        revision=spec.revision,
        split=spec.split,
        data_files=spec.data_files,
        rows_in_split=len(ds),
        datasets_version=datasets.__version__,
    )
    if local:
        prov["sha256"] = {str(p): sha256_file(p) for p in local}
    if warning:
        prov["warning"] = warning
    n = len(ds) if spec.limit is None else min(spec.limit, len(ds))
    label = f"{spec.path}@{spec.revision}" + (f"[{spec.config_name}]" if spec.config_name else "") + f"/{spec.split}"
    for i, r in enumerate(ds.select(range(n)) if n < len(ds) else ds):
        yield f"{label} row {i}", i, r
