"""Dataset sources: rows of a released or local dataset become :class:`cft_lab.data.records.Record` objects.

Contract
--------
``load_source(spec) -> SourceResult`` reads one :class:`SourceSpec` and returns ``records`` (status
``no_teacher``, response source ``reference``), ``skipped`` (``{reason: count}``, only with ``on_error="skip"``)
and ``provenance`` (where the rows came from: path or hub id, revision, config, split, row counts, sha256 of every
local file read, the sample seed). Nothing is dropped silently: a bad row raises :class:`SourceError` naming the
place and the field, or, with ``on_error="skip"``, is counted under its reason (logged, and in both
``skipped`` and ``provenance``, with the first messages of each reason as examples).

Kinds (``SourceSpec.kind``), i.e. row schemas:

``webinstruct_cft``   the released WebInstruct-CFT rows (docs/protocol.md §1.2): ``instruction`` / ``input`` /
``output``
                      with ``input = "Question:\\n{q}\\n\\nSolution:\\n{y}"``. ``input`` is split at the first
                      ``"\\n\\nSolution:\\n"`` as the authors' scripts do; unlike their ``split(...)[1]`` the whole
                      remainder is the response (a response that itself contains the separator is kept whole, and
                      counted in provenance). ``output`` (the GPT-4o-1120 critique) is kept in
                      ``meta["released_critique"]`` for a replay teacher; the record itself has no critique yet.
``webinstruct_raw``   the authors' raw debug records (docs/benchmarks.md#webinstruct_cft_sample): ``question``,
                      ``answer`` (the noisy response), ``index`` (WebInstruct item index: the id), ``gpt4o_answer``
                      (kept as ``meta["released_critique"]``), optional ``source`` and ``cost`` (kept in ``meta``).
``metamathqa``        ``meta-math/MetaMathQA`` rows: ``query`` / ``response`` (+ ``type``, ``original_question`` in
                      ``meta``); gold = X of a final ``The answer is: X`` line, else None (counted).
``numinamath_cot``    ``AI-MO/NuminaMath-CoT`` rows: ``problem`` / ``solution`` (+ ``source`` in ``meta``); gold =
                      the last ``\\boxed{}`` of the solution, else None (counted).
``chat_messages``     chat-format SFT rows (AceMath-Instruct-Training-Data): ``messages`` = [{role, content}, ...];
                      question = the first user turn, response = the last assistant turn, gold = ``answer`` if any.
``local``             any rows, through ``field_map`` ``{record field: column}`` with record fields ``id``,
                      ``question``, ``response``, ``gold``, ``response_correct``, ``released_critique``
                      (default ``{"question": "question", "response": "response"}``). Mapped columns are required
                      in every row; ``gold`` and ``response_correct`` may be null.
``hub``               any of the above schemas (``schema``; ``"local"`` means the field map) loaded with
                      ``datasets.load_dataset(path, config_name, revision=..., split=..., data_files=...)``.

Files: the first five kinds read a local ``.jsonl`` (1-based line numbers in errors), ``.json`` (an array; row
index in errors; a ``.json`` file that does not start with ``[`` is read as JSON lines) or ``.parquet`` (row
index) file. JSON is read line by line with the standard library, not through ``datasets``/pyarrow, because those
infer one schema per file: a single wrong-typed value fails the whole file without a line number, and a missing
field silently becomes null. Parquet is read with pyarrow in batches. ``hub`` goes through ``datasets``; its rows
are named by index (``<path>@<revision>[<config>]/<split> row <i>``).

Pinning: a ``hub`` source that names a hub repository must give ``revision``; an unpinned one is refused unless
``allow_unpinned=True`` (then it warns and provenance says ``"revision": null``). A revision that is not a
40-hex commit sha (a branch or tag, which can move) is accepted with a warning. Packaged builders with
``data_files`` (``path="json"``/``"parquet"``) and local folders need no revision.

Ids: the dataset's id when it has one (``webinstruct_raw``: ``<name>-<index>``; ``local``: the mapped ``id``
column), else ``<name>-<row>`` with the row's position in the file (0-based), so ids do not depend on
``limit``/``sample``. Duplicate ids are errors (``id: duplicate`` when skipping).

Subsets: ``limit`` reads only the first N rows of the file or split (bad rows among them count). ``sample`` then
keeps N of the valid records: those with the smallest ``sha256(f"{seed}:{id}")``. Hand-written rather than
``random.sample`` so that a subset depends only on (seed, ids), never on library versions or file order, and so
that the ``sample=4000`` subset is contained in the ``sample=50000`` one with the same seed (docs/protocol.md §1.3's 4K
subset of the 50K). Asking for more than there are is an error.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from cft_lab.data.records import Record, RecordError
from cft_lab.data.sources.errors import SourceError
from cft_lab.data.sources.files import check_pinned, hub_rows, local_rows, sha256_file
from cft_lab.data.sources.schemas import PARSERS, SourceCtx

log = logging.getLogger(__name__)

SCHEMAS = ("webinstruct_cft", "webinstruct_raw", "metamathqa", "numinamath_cot", "chat_messages", "local")
KINDS = SCHEMAS + ("hub",)
MAPPABLE = ("id", "question", "response", "gold", "response_correct", "released_critique")
DEFAULT_FIELD_MAP = {"question": "question", "response": "response"}
EXAMPLES_PER_REASON = 3


@dataclass
class SourceSpec:
    """Where one dataset's rows come from and how to read them (mirrored by the data config's schema).

    kind:           one of :data:`KINDS` (the row schema, or ``hub``)
    path:           a local file (schema kinds), or for ``hub`` a hub id, a local folder or a packaged builder
    name:           short name for generated ids and for counts (default: the kind, or the file stem for
                    ``local``, or the repo name for ``hub``)
    schema:         ``hub`` only: the rows' schema, one of :data:`SCHEMAS`
    config_name:    ``hub``: the dataset config (e.g. ``WebInstruct-CFT-50K``)
    revision:       ``hub``: the commit sha to load (required for hub repositories unless ``allow_unpinned``)
    split:          ``hub``: the split (default ``train``)
    data_files:     ``hub``: files for a packaged builder (``path="json"``/``"parquet"``)
    field_map:      ``local`` (or ``hub`` with ``schema="local"``): ``{record field: column}``
    limit:          read only the first N rows
    sample:         keep N valid records chosen by ``sha256(seed:id)`` (see the module doc)
    seed:           the sample's seed
    on_error:       ``raise`` (default) or ``skip`` (skip bad rows, counted by reason)
    allow_unpinned: ``hub``: load a hub repository without a revision (warns)
    cache_dir:      ``hub``: the ``datasets`` cache folder (default: the user's)
    """

    kind: str
    path: str
    name: Optional[str] = None
    schema: Optional[str] = None
    config_name: Optional[str] = None
    revision: Optional[str] = None
    split: str = "train"
    data_files: Any = None
    field_map: Optional[dict] = None
    limit: Optional[int] = None
    sample: Optional[int] = None
    seed: int = 0
    on_error: str = "raise"
    allow_unpinned: bool = False
    cache_dir: Optional[str] = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"source kind {self.kind!r} is unknown; known: {', '.join(KINDS)}")
        if not self.path:
            raise ValueError(f"source kind {self.kind}: 'path' is required")
        self.path = str(self.path)
        if self.kind == "hub":
            if self.schema not in SCHEMAS:
                raise ValueError(
                    f"source {self.path}: kind 'hub' needs 'schema', one of {', '.join(SCHEMAS)} (got {self.schema!r})"
                )
        elif self.schema not in (None, self.kind):
            raise ValueError(f"source {self.path}: 'schema' is only for kind 'hub' (kind is {self.kind!r})")
        if isinstance(self.field_map, dict):  # from the typed config: unmapped fields are null
            self.field_map = {k: v for k, v in self.field_map.items() if v is not None} or None
        if self.field_map is not None and self.row_schema != "local":
            raise ValueError(
                f"source {self.path}: 'field_map' applies to kind 'local' (or hub schema 'local'), "
                f"not to {self.row_schema!r}, whose fields are fixed"
            )
        if self.row_schema == "local":
            fm = dict(self.field_map or DEFAULT_FIELD_MAP)
            unknown = sorted(set(fm) - set(MAPPABLE))
            if unknown:
                raise ValueError(
                    f"source {self.path}: field_map key(s) {unknown} are not record fields; "
                    f"known: {', '.join(MAPPABLE)}"
                )
            if "question" not in fm:
                raise ValueError(f"source {self.path}: field_map must map 'question'")
            if not all(isinstance(v, str) and v for v in fm.values()):
                raise ValueError(f"source {self.path}: field_map values must be column names, got {fm}")
            self.field_map = fm
        for name in ("limit", "sample"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"source {self.path}: {name!r} must be a positive integer or null, got {v!r}")
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"source {self.path}: on_error must be 'raise' or 'skip', got {self.on_error!r}")
        if self.name is None:
            if self.kind == "local":
                self.name = Path(self.path).stem
            elif self.kind == "hub":
                self.name = self.path.rstrip("/").split("/")[-1]
            else:
                self.name = self.kind

    @property
    def row_schema(self) -> str:
        return self.schema if self.kind == "hub" else self.kind


@dataclass
class SourceResult:
    """Records of one source, skipped rows by reason, and where they came from."""

    records: list[Record]
    skipped: dict[str, int] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)


def sample_key(seed: int, record_id: str) -> str:
    """The sort key of seeded sampling: ``sha256(f"{seed}:{id}")`` in hex.

    >>> sample_key(0, "a")[:12]
    '9df3c5fab8ef'
    """
    return hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest()


def sample_records(records: list[Record], n: int, seed: int) -> list[Record]:
    """The ``n`` records with the smallest :func:`sample_key`, in their original order."""
    if n > len(records):
        raise ValueError(f"sample={n} asks for more records than the source has ({len(records)} valid)")
    keep = {r.id for r in sorted(records, key=lambda r: sample_key(seed, r.id))[:n]}
    return [r for r in records if r.id in keep]


def load_source(spec: SourceSpec) -> SourceResult:
    """Read ``spec``'s rows into records (see the module doc for kinds, errors, ids, limit and sample)."""
    prov: dict = {"kind": spec.kind, "schema": spec.row_schema, "name": spec.name}
    rows = hub_rows(spec, prov) if spec.kind == "hub" else local_rows(spec, prov)
    parse = PARSERS[spec.row_schema]
    ctx = SourceCtx(spec)
    records: list[Record] = []
    skipped: Counter = Counter()
    examples: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    n_rows = 0
    for where, i, row in rows:
        n_rows += 1
        try:
            if isinstance(row, SourceError):
                raise row
            if not isinstance(row, dict):
                raise SourceError(where, "<row>", "not an object", f"got {type(row).__name__}")
            try:
                rec = parse(row, where, i, ctx)
            except RecordError as e:
                raise SourceError(where, e.field, e.problem) from None
            if rec.id in seen:
                raise SourceError(where, "id", "duplicate", f"{rec.id!r} first seen at {seen[rec.id]}")
            seen[rec.id] = where
        except SourceError as e:
            if spec.on_error == "raise":
                raise
            skipped[e.reason] += 1
            if len(examples.setdefault(e.reason, [])) < EXAMPLES_PER_REASON:
                examples[e.reason].append(str(e))
            continue
        records.append(rec)
    n_valid = len(records)
    if n_rows == 0:
        raise SourceError(spec.path, "<file>", "no rows", "the source is empty: nothing to build a dataset from")
    if not records:
        raise SourceError(spec.path, "<file>", "no valid rows", f"all {n_rows} rows were skipped: {dict(skipped)}")
    if spec.sample is not None:
        records = sample_records(records, spec.sample, spec.seed)
        prov["sample"] = {"n": spec.sample, "seed": spec.seed, "rule": "smallest sha256(f'{seed}:{id}')"}
    prov.update(
        limit=spec.limit,
        rows_read=n_rows,
        valid=n_valid,
        records=len(records),
        skipped=dict(skipped),
        **({"skip_examples": examples} if examples else {}),
        **dict(ctx.counts),
    )
    if skipped:
        log.warning("source %s: skipped %d of %d rows: %s", spec.name, sum(skipped.values()), n_rows, dict(skipped))
    log.info("source %s: %d records from %d rows", spec.name, len(records), n_rows)
    return SourceResult(records=records, skipped=dict(skipped), provenance=prov)


__all__ = [
    "DEFAULT_FIELD_MAP",
    "KINDS",
    "MAPPABLE",
    "SCHEMAS",
    "SourceError",
    "SourceResult",
    "SourceSpec",
    "check_pinned",
    "load_source",
    "sample_key",
    "sample_records",
    "sha256_file",
]
