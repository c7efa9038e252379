"""Read the records of an offline W&B run file (``run-<id>.wandb``) for the tests.

wandb >= 0.19 writes offline runs from its Go core and ships no Python reader, so this decodes the file format it
documents in its sources: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then LevelDB-log-style chunks in
32 KiB blocks (crc32c uint32, length uint16, type uint8: 1 full, 2 first, 3 middle, 4 last), each assembled record
a ``wandb_internal_pb2.Record`` protobuf. Checksums are not verified: a corrupt file fails to parse instead.
"""

from __future__ import annotations

import struct
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7


def read_records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, records, pending = HEADER, [], b""
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            break
        pending += chunk
        if kind in (1, 4):  # full record, or the last chunk of one
            rec = pb.Record()
            rec.ParseFromString(pending)
            records.append(rec)
            pending = b""
    return records


def config_and_summary(path: Path) -> tuple[dict, dict]:
    """The run's config keys -> JSON values and its final summary keys -> JSON values."""
    import json

    config, summary = {}, {}
    for rec in read_records(path):
        kind = rec.WhichOneof("record_type")
        if kind in ("config", "run"):  # the run record carries the config given to wandb.init
            items = rec.config.update if kind == "config" else rec.run.config.update
            config.update({i.key: json.loads(i.value_json) for i in items})
        elif kind == "summary":
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.summary.update})
        elif kind == "history":
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item})
    return config, summary


def logged_keys(path: Path) -> tuple[dict, set[str]]:
    """The run's config, and every key it logged: history and summary keys, and the names of the W&B Tables and
    images it logged (``<name>/_type`` entries: ``table-file``, ``image-file``)."""
    config, summary = config_and_summary(path)
    keys = set(summary)
    keys |= {k.rsplit("/", 1)[0] for k in summary if k.endswith("/_type")}
    return config, keys


def logged_table(run_dir: Path, name: str) -> dict:
    """A W&B Table the run logged under ``name``: {"columns", "data"} read from the run's media file."""
    import json

    (run_file,) = Path(run_dir).glob("run-*.wandb")
    _, summary = config_and_summary(run_file)
    assert summary.get(f"{name}/_type") == "table-file", f"{run_file} logged no table {name}"
    return json.loads((Path(run_dir) / "files" / summary[f"{name}/path"]).read_text(encoding="utf-8"))
