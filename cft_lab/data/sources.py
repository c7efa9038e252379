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

``webinstruct_cft``   the released WebInstruct-CFT rows (PROTOCOL §1.2): ``instruction`` / ``input`` / ``output``
                      with ``input = "Question:\\n{q}\\n\\nSolution:\\n{y}"``. ``input`` is split at the first
                      ``"\\n\\nSolution:\\n"`` as the authors' scripts do; unlike their ``split(...)[1]`` the whole
                      remainder is the response (a response that itself contains the separator is kept whole, and
                      counted in provenance). ``output`` (the GPT-4o-1120 critique) is kept in
                      ``meta["released_critique"]`` for a replay teacher; the record itself has no critique yet.
``webinstruct_raw``   the authors' raw debug records (PROVENANCE "webinstruct_cft_sample"): ``question``, ``answer``
                      (the noisy response), ``index`` (WebInstruct item index: the id), ``gpt4o_answer`` (kept as
                      ``meta["released_critique"]``), optional ``source`` and ``cost`` (kept in ``meta``).
``metamathqa``        ``meta-math/MetaMathQA`` rows: ``query`` / ``response`` (+ ``type``, ``original_question`` in
                      ``meta``); gold = X of a final ``The answer is: X`` line, else None (counted).
``numinamath_cot``    ``AI-MO/NuminaMath-CoT`` rows: ``problem`` / ``solution`` (+ ``source`` in ``meta``); gold =
                      the last ``\\boxed{}`` of the solution, else None (counted).
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
that the ``sample=4000`` subset is contained in the ``sample=50000`` one with the same seed (PROTOCOL §1.3's 4K
subset of the 50K). Asking for more than there are is an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from cft_lab.data.records import Record, RecordError

log = logging.getLogger(__name__)

SCHEMAS = ("webinstruct_cft", "webinstruct_raw", "metamathqa", "numinamath_cot", "local")
KINDS = SCHEMAS + ("hub",)
MAPPABLE = ("id", "question", "response", "gold", "response_correct", "released_critique")
DEFAULT_FIELD_MAP = {"question": "question", "response": "response"}
SOLUTION_MARK = "\n\nSolution:\n"
QUESTION_MARK = "Question:\n"
PACKAGED_BUILDERS = ("json", "parquet", "csv", "arrow", "text")
_SHA = re.compile(r"[0-9a-f]{40}")
_METAMATH_ANSWER = re.compile(r"The answer is:[ \t]*(?P<gold>[^\n]*?)[ \t]*\Z")
EXAMPLES_PER_REASON = 3


class SourceError(ValueError):
    """A source row (or the source itself) is malformed; names the place, the field and the problem."""

    def __init__(self, where: str, field_name: str, problem: str, detail: str = ""):
        self.where, self.field, self.problem = where, field_name, problem
        self.reason = f"{field_name}: {problem}"
        super().__init__(f"{where}: field {field_name!r}: {problem}" + (f" ({detail})" if detail else ""))


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
                raise ValueError(f"source {self.path}: kind 'hub' needs 'schema', one of {', '.join(SCHEMAS)} "
                                 f"(got {self.schema!r})")
        elif self.schema not in (None, self.kind):
            raise ValueError(f"source {self.path}: 'schema' is only for kind 'hub' (kind is {self.kind!r})")
        if self.field_map is not None and self.row_schema != "local":
            raise ValueError(f"source {self.path}: 'field_map' applies to kind 'local' (or hub schema 'local'), "
                             f"not to {self.row_schema!r}, whose fields are fixed")
        if self.row_schema == "local":
            fm = dict(self.field_map or DEFAULT_FIELD_MAP)
            unknown = sorted(set(fm) - set(MAPPABLE))
            if unknown:
                raise ValueError(f"source {self.path}: field_map key(s) {unknown} are not record fields; "
                                 f"known: {', '.join(MAPPABLE)}")
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


# ---------------------------------------------------------------------- row readers
def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_Row = tuple[str, int, Any]  # (where, 0-based row position, row or a SourceError)


def _read_jsonl(path: Path, limit: Optional[int]) -> Iterator[_Row]:
    row = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue  # blank lines are not rows
            if limit is not None and row >= limit:
                return
            where = f"{path}:{lineno}"
            try:
                yield where, row, json.loads(line)
            except json.JSONDecodeError as e:
                yield where, row, SourceError(where, "<row>", "invalid JSON", e.msg)
            row += 1


def _read_json(path: Path, limit: Optional[int]) -> Iterator[_Row]:
    with open(path, encoding="utf-8") as f:
        head = f.read(4096).lstrip()
    if not head.startswith("["):
        yield from _read_jsonl(path, limit)
        return
    with open(path, encoding="utf-8") as f:
        try:
            rows = json.load(f)
        except json.JSONDecodeError as e:
            raise SourceError(f"{path}:{e.lineno}", "<file>", "invalid JSON", e.msg) from None
    for i, r in enumerate(rows if limit is None else rows[:limit]):
        yield f"{path} row {i}", i, r


def _read_parquet(path: Path, limit: Optional[int]) -> Iterator[_Row]:
    import pyarrow.parquet as pq

    i = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for r in batch.to_pylist():
            if limit is not None and i >= limit:
                return
            yield f"{path} row {i}", i, r
            i += 1


def _local_rows(spec: SourceSpec, prov: dict) -> Iterator[_Row]:
    path = Path(spec.path)
    if not path.is_file():
        raise FileNotFoundError(f"source {spec.kind}: no such file {spec.path}")
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_parquet}
    if path.suffix not in readers:
        raise ValueError(f"source {spec.path}: unknown file type {path.suffix!r}; use .jsonl, .json or .parquet")
    prov.update(path=str(path), sha256={str(path): sha256_file(path)})
    yield from readers[path.suffix](path, spec.limit)


def check_pinned(spec: SourceSpec) -> Optional[str]:
    """Refuse (or warn about) a hub source whose revision is not pinned; returns the warning, if any.

    >>> check_pinned(SourceSpec(kind="hub", schema="metamathqa", path="json", data_files="x.jsonl")) is None
    True
    """
    if spec.path in PACKAGED_BUILDERS or Path(spec.path).is_dir():
        return None
    if spec.revision is None:
        if not spec.allow_unpinned:
            raise ValueError(
                f"source {spec.path}: hub datasets must be loaded at a pinned revision (a commit sha); set "
                f"revision, or allow_unpinned=true to load whatever the hub serves today (it can change)")
        msg = f"source {spec.path}: loading an UNPINNED hub revision; the data can change under the same config"
    elif not _SHA.fullmatch(spec.revision):
        msg = f"source {spec.path}: revision {spec.revision!r} is not a commit sha; a branch or tag can move"
    else:
        return None
    log.warning(msg)
    return msg


def _hub_rows(spec: SourceSpec, prov: dict) -> Iterator[_Row]:
    import datasets

    warning = check_pinned(spec)
    ds = datasets.load_dataset(spec.path, spec.config_name, revision=spec.revision, split=spec.split,
                               data_files=spec.data_files, cache_dir=spec.cache_dir)
    local = []
    if Path(spec.path).is_dir():
        local = sorted(p for p in Path(spec.path).rglob("*") if p.is_file())
    elif spec.data_files is not None:
        files = [spec.data_files] if isinstance(spec.data_files, str) else list(spec.data_files)
        local = [Path(f) for f in files if Path(f).is_file()]
    prov.update(path=spec.path, config_name=spec.config_name, revision=spec.revision, split=spec.split,
                data_files=spec.data_files, rows_in_split=len(ds), datasets_version=datasets.__version__)
    if local:
        prov["sha256"] = {str(p): sha256_file(p) for p in local}
    if warning:
        prov["warning"] = warning
    n = len(ds) if spec.limit is None else min(spec.limit, len(ds))
    label = f"{spec.path}@{spec.revision}" + (f"[{spec.config_name}]" if spec.config_name else "") + f"/{spec.split}"
    for i, r in enumerate(ds.select(range(n)) if n < len(ds) else ds):
        yield f"{label} row {i}", i, r


# ---------------------------------------------------------------------- field checks
def _str(row: dict, where: str, name: str, *, required: bool = True, nonempty: bool = True,
         col: Optional[str] = None) -> Optional[str]:
    col = col or name
    if col not in row or row[col] is None:
        if required:
            raise SourceError(where, col, "missing")
        return None
    v = row[col]
    if not isinstance(v, str):
        raise SourceError(where, col, "wrong type", f"expected a string, got {type(v).__name__}")
    if nonempty and not v.strip():
        raise SourceError(where, col, "empty")
    return v


def metamath_gold(response: str) -> Optional[str]:
    """X of a final ``The answer is: X`` line of a MetaMathQA response, else None.

    >>> metamath_gold("So 2+2=4.\\nThe answer is: 4"), metamath_gold("The answer is: 4\\nmore"), metamath_gold("x")
    ('4', None, None)
    """
    m = _METAMATH_ANSWER.search(response.rstrip())
    return m.group("gold") if m and m.group("gold") else None


def boxed_gold(solution: str) -> Optional[str]:
    """The last ``\\boxed{...}`` of a solution (braces matched), else None.

    >>> boxed_gold(r"so $\\boxed{\\frac{1}{2}}$."), boxed_gold("no box")
    ('\\\\frac{1}{2}', None)
    """
    from cft_lab.testbed.answers import extract_boxed

    g = extract_boxed(solution)
    return g.strip() if g and g.strip() else None


class _Ctx:
    """Per-source state shared by the row parsers: the spec, provenance counters."""

    def __init__(self, spec: SourceSpec):
        self.spec = spec
        self.counts: Counter = Counter()

    def source(self, row: int, row_id: Any = None) -> dict:
        s = self.spec
        return {"name": s.name, "dataset": s.path, "revision": s.revision if s.kind == "hub" else None,
                "config": s.config_name if s.kind == "hub" else None, "split": s.split if s.kind == "hub" else None,
                "row": row, "row_id": row_id}


def _webinstruct_cft(row: dict, where: str, i: int, ctx: _Ctx) -> Record:
    from cft_lab.prompts import CFT_INSTRUCTION

    instruction = _str(row, where, "instruction", nonempty=False)
    inp = _str(row, where, "input")
    output = _str(row, where, "output")
    head, sep, response = inp.partition(SOLUTION_MARK)
    if not sep or not head.startswith(QUESTION_MARK):
        raise SourceError(where, "input", "not in the Question/Solution layout",
                          "expected 'Question:\\n...\\n\\nSolution:\\n...'")
    question = head[len(QUESTION_MARK):]
    if not question.strip():
        raise SourceError(where, "input", "empty question")
    if not response.strip():
        raise SourceError(where, "input", "empty solution")
    meta = {"released_critique": output}
    if instruction != CFT_INSTRUCTION:
        meta["instruction"] = instruction
        ctx.counts["nonstandard_instruction"] += 1
    if SOLUTION_MARK in response:
        meta["solution_mark_repeated"] = True
        ctx.counts["solution_mark_repeated"] += 1
    return Record(id=f"{ctx.spec.name}-{i}", question=question, response=response, source=ctx.source(i), meta=meta)


def _webinstruct_raw(row: dict, where: str, i: int, ctx: _Ctx) -> Record:
    question = _str(row, where, "question")
    answer = _str(row, where, "answer")
    critique = _str(row, where, "gpt4o_answer")
    index = row.get("index")
    if index is None:
        raise SourceError(where, "index", "missing")
    if isinstance(index, bool) or not isinstance(index, int):
        raise SourceError(where, "index", "wrong type", f"expected an integer, got {type(index).__name__}")
    meta: dict = {"released_critique": critique}
    origin = _str(row, where, "source", required=False, nonempty=False)
    if origin is not None:
        meta["origin"] = origin
    cost = row.get("cost")
    if cost is not None:
        if isinstance(cost, bool) or not isinstance(cost, (int, float)):
            raise SourceError(where, "cost", "wrong type", f"expected a number, got {type(cost).__name__}")
        meta["released_cost_usd"] = cost
    return Record(id=f"{ctx.spec.name}-{index}", question=question, response=answer,
                  source=ctx.source(i, index), meta=meta)


def _metamathqa(row: dict, where: str, i: int, ctx: _Ctx) -> Record:
    question = _str(row, where, "query")
    response = _str(row, where, "response")
    meta = {}
    for k in ("type", "original_question"):
        v = _str(row, where, k, required=False, nonempty=False)
        if v is not None:
            meta[k] = v
    gold = metamath_gold(response)
    if gold is None:
        ctx.counts["gold_missing"] += 1
    return Record(id=f"{ctx.spec.name}-{i}", question=question, response=response, gold=gold,
                  source=ctx.source(i), meta=meta)


def _numinamath_cot(row: dict, where: str, i: int, ctx: _Ctx) -> Record:
    question = _str(row, where, "problem")
    solution = _str(row, where, "solution")
    meta = {}
    origin = _str(row, where, "source", required=False, nonempty=False)
    if origin is not None:
        meta["origin"] = origin
    gold = boxed_gold(solution)
    if gold is None:
        ctx.counts["gold_missing"] += 1
    return Record(id=f"{ctx.spec.name}-{i}", question=question, response=solution, gold=gold,
                  source=ctx.source(i), meta=meta)


def _local(row: dict, where: str, i: int, ctx: _Ctx) -> Record:
    fm = ctx.spec.field_map
    question = _str(row, where, "question", col=fm["question"])
    response = _str(row, where, "response", col=fm["response"]) if "response" in fm else None
    critique = _str(row, where, "released_critique", col=fm["released_critique"]) \
        if "released_critique" in fm else None
    gold = None
    if "gold" in fm:
        col = fm["gold"]
        if col not in row:
            raise SourceError(where, col, "missing")
        v = row[col]
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                raise SourceError(where, col, "wrong type", f"expected a string or number, got {type(v).__name__}")
            gold = str(v)
    correct = None
    if "response_correct" in fm:
        col = fm["response_correct"]
        if col not in row:
            raise SourceError(where, col, "missing")
        correct = row[col]
        if correct is not None and not isinstance(correct, bool):
            raise SourceError(where, col, "wrong type", f"expected true/false/null, got {type(correct).__name__}")
    row_id = None
    if "id" in fm:
        col = fm["id"]
        v = row.get(col)
        if v is None:
            raise SourceError(where, col, "missing")
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            raise SourceError(where, col, "wrong type", f"expected a string or integer, got {type(v).__name__}")
        row_id = v
        rid = str(v)
        if not rid.strip():
            raise SourceError(where, col, "empty")
    else:
        rid = f"{ctx.spec.name}-{i}"
    meta = {"released_critique": critique} if critique is not None else {}
    return Record(id=rid, question=question, response=response, gold=gold, response_correct=correct,
                  source=ctx.source(i, row_id), meta=meta)


PARSERS: dict[str, Callable[[dict, str, int, _Ctx], Record]] = {
    "webinstruct_cft": _webinstruct_cft, "webinstruct_raw": _webinstruct_raw, "metamathqa": _metamathqa,
    "numinamath_cot": _numinamath_cot, "local": _local,
}


# ---------------------------------------------------------------------- sampling
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


# ---------------------------------------------------------------------- entry point
def load_source(spec: SourceSpec) -> SourceResult:
    """Read ``spec``'s rows into records (see the module doc for kinds, errors, ids, limit and sample)."""
    prov: dict = {"kind": spec.kind, "schema": spec.row_schema, "name": spec.name}
    rows = _hub_rows(spec, prov) if spec.kind == "hub" else _local_rows(spec, prov)
    parse = PARSERS[spec.row_schema]
    ctx = _Ctx(spec)
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
    if spec.sample is not None:
        records = sample_records(records, spec.sample, spec.seed)
        prov["sample"] = {"n": spec.sample, "seed": spec.seed, "rule": "smallest sha256(f'{seed}:{id}')"}
    prov.update(limit=spec.limit, rows_read=n_rows, valid=n_valid, records=len(records), skipped=dict(skipped),
                **({"skip_examples": examples} if examples else {}), **dict(ctx.counts))
    if skipped:
        log.warning("source %s: skipped %d of %d rows: %s", spec.name, sum(skipped.values()), n_rows, dict(skipped))
    log.info("source %s: %d records from %d rows", spec.name, len(records), n_rows)
    return SourceResult(records=records, skipped=dict(skipped), provenance=prov)
