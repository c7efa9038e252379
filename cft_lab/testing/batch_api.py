"""TEST SERVER, continued: the OpenAI Files and Batch APIs on the loopback chat server (:mod:`.chat_server`).

Routes (what the official SDK calls): ``POST /v1/files`` (multipart upload, ``purpose=batch``), ``GET /v1/files/<id>``,
``GET /v1/files/<id>/content``; ``POST /v1/batches`` (``input_file_id``, ``endpoint``, ``completion_window``),
``GET /v1/batches/<id>``, ``GET /v1/batches`` (list), ``POST /v1/batches/<id>/cancel``.

A created batch is ``validating`` then ``in_progress`` for ``latency_s`` seconds, then it answers every line of its
input file as the chat server would (the server's :class:`~cft_lab.testing.chat_server.FaultPlan` decides each
request's fault, and its per-key counters count it), writes the ``output`` file (lines with a ``response`` whose
``status_code`` is 200, or the injected error status) and the ``error`` file, and ends ``completed``. Two ways to
end otherwise, as the real service does:

* ``expire_after=N``: only the first N requests run; the rest are written to the error file with code
  ``batch_expired`` and the batch ends ``expired``;
* ``fail_validation="msg"``: the batch ends ``failed`` with that error, nothing run.

Counters: ``files`` (uploads), ``created`` (batches), ``polls``, ``downloads``.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cft_lab.testing.chat_server import ChatServer

TERMINAL = ("completed", "expired", "failed", "cancelled")
_STATUS = {"400": 400, "401": 401, "500": 500, "503": 503, "429": 429}


class BatchAPI:
    """The Files and Batch endpoints' state (one per :class:`ChatServer`)."""

    def __init__(self, server: ChatServer, latency_s: float = 0.2):
        self.server = server
        self.latency_s = latency_s
        self.expire_after: int | None = None
        self.fail_validation: str | None = None
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.created = self.polls = self.downloads = 0
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- files
    def upload(self, content_type: str, raw: bytes) -> tuple[int, dict]:
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
        )
        fields = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[name] = (part.get_filename(), part.get_payload(decode=True))
        if "file" not in fields or fields.get("purpose", (None, b""))[1] != b"batch":
            return 400, _err("a multipart upload with a `file` and purpose=batch is expected")
        return 200, self._add_file(fields["file"][0] or "upload.jsonl", fields["file"][1], "batch")

    def _add_file(self, filename: str, data: bytes, purpose: str) -> dict:
        fid = "file-" + uuid.uuid4().hex[:24]
        obj = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
               "filename": filename, "purpose": purpose, "status": "processed"}  # fmt: skip
        with self._lock:
            self.files[fid] = {**obj, "data": data}
        return obj

    def file(self, fid: str, content: bool) -> tuple[int, dict | bytes]:
        f = self.files.get(fid)
        if f is None:
            return 404, _err(f"no file {fid}")
        if content:
            with self._lock:
                self.downloads += 1
            return 200, f["data"]
        return 200, {k: v for k, v in f.items() if k != "data"}

    # ----------------------------------------------------------------- batches
    def create(self, body: dict) -> tuple[int, dict]:
        fid = body.get("input_file_id")
        if fid not in self.files:
            return 400, _err(f"input_file_id {fid!r} is not an uploaded file")
        if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
            return 400, _err("endpoint must be /v1/chat/completions and completion_window 24h")
        bid = "batch_" + uuid.uuid4().hex[:24]
        now = int(time.time())
        batch = {"id": bid, "object": "batch", "endpoint": body["endpoint"], "errors": None, "input_file_id": fid,
                 "completion_window": "24h", "status": "validating", "output_file_id": None, "error_file_id": None,
                 "created_at": now, "in_progress_at": None, "expires_at": now + 86400, "completed_at": None,
                 "expired_at": None, "failed_at": None, "cancelled_at": None,
                 "request_counts": {"total": 0, "completed": 0, "failed": 0},
                 "metadata": body.get("metadata")}  # fmt: skip
        with self._lock:
            self.batches[bid] = batch
            self.created += 1
        threading.Thread(target=self._process, args=(bid,), daemon=True, name=f"batch:{bid}").start()
        return 200, dict(batch)

    def get(self, bid: str) -> tuple[int, dict]:
        with self._lock:
            self.polls += 1
            b = self.batches.get(bid)
            return (404, _err(f"no batch {bid}")) if b is None else (200, dict(b))

    def list(self) -> tuple[int, dict]:
        with self._lock:
            data = [dict(b) for b in sorted(self.batches.values(), key=lambda b: -b["created_at"])]
        return 200, {"object": "list", "data": data, "first_id": None, "last_id": None, "has_more": False}

    def cancel(self, bid: str) -> tuple[int, dict]:
        with self._lock:
            b = self.batches.get(bid)
            if b is None:
                return 404, _err(f"no batch {bid}")
            if b["status"] not in TERMINAL:
                b["status"] = "cancelling"
            return 200, dict(b)

    def _process(self, bid: str) -> None:
        time.sleep(self.latency_s / 2)
        batch = self.batches[bid]
        if self.fail_validation:
            self._set(bid, status="failed", failed_at=int(time.time()),
                      errors={"object": "list", "data": [{"code": "invalid_request", "message": self.fail_validation,
                                                          "line": 1, "param": None}]})  # fmt: skip
            return
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]]["data"].decode().splitlines() if x.strip()]
        self._set(bid, status="in_progress", in_progress_at=int(time.time()))
        time.sleep(self.latency_s / 2)
        out, err = [], []
        done = failed = 0
        for i, line in enumerate(lines):
            cid, body = line["custom_id"], line["body"]
            if self.batches[bid]["status"] == "cancelling" or (
                self.expire_after is not None and i >= self.expire_after
            ):
                code = "batch_cancelled" if self.batches[bid]["status"] == "cancelling" else "batch_expired"
                err.append({"id": f"batch_req_{i}", "custom_id": cid, "response": None,
                            "error": {"code": code, "message": "This request could not be executed before the "
                                                               "completion window expired."}})  # fmt: skip
                failed += 1
                continue
            fault = self.server._admit(cid)
            if fault == "ok":
                resp = {"status_code": 200, "request_id": f"req_{i}", "body": self.server.completion(body, cid)}
                with self.server._lock:
                    self.server.ok_by_key[cid] += 1
                out.append({"id": f"batch_req_{i}", "custom_id": cid, "response": resp, "error": None})
                done += 1
            else:
                status = _STATUS.get(fault, 500)
                resp = {"status_code": status, "request_id": f"req_{i}",
                        "body": _err(f"injected {fault}")}  # fmt: skip
                err.append({"id": f"batch_req_{i}", "custom_id": cid, "response": resp, "error": None})
                failed += 1
        final = "cancelled" if self.batches[bid]["status"] == "cancelling" else (
            "expired" if self.expire_after is not None and len(lines) > self.expire_after else "completed")  # fmt: skip
        ofid = self._add_file("output.jsonl", _jsonl(out), "batch_output")["id"] if out else None
        efid = self._add_file("errors.jsonl", _jsonl(err), "batch_output")["id"] if err else None
        self._set(bid, status=final, output_file_id=ofid, error_file_id=efid, **{f"{final}_at": int(time.time())},
                  request_counts={"total": len(lines), "completed": done, "failed": failed})  # fmt: skip

    def _set(self, bid: str, **kw) -> None:
        with self._lock:
            self.batches[bid].update(kw)


def route(server: ChatServer, handler, method: str, raw: bytes) -> bool:
    """Answer one request of the Files or Batch API through the chat server's ``handler``; False when the path is
    not theirs (the chat server answers it)."""
    path = handler.path.split("?")[0].rstrip("/")
    parts = path.split("/")[2:]  # after /v1
    if len(parts) < 1 or parts[0] not in ("files", "batches") or path.split("/")[1] != "v1":
        return False
    api = server.batch
    if server.api_key is not None and handler.headers.get("Authorization") != f"Bearer {server.api_key}":
        presented = (handler.headers.get("Authorization") or "").removeprefix("Bearer ")  # echoed, as some do
        handler._error(401, f"Incorrect API key provided: {presented}.", "invalid_request_error")
        return True
    if parts == ["files"] and method == "POST":
        status, obj = api.upload(handler.headers.get("Content-Type", ""), raw)
    elif parts[0] == "files" and len(parts) in (2, 3) and method == "GET":
        status, obj = api.file(parts[1], content=parts[2:] == ["content"])
    elif parts == ["batches"] and method == "POST":
        try:
            status, obj = api.create(json.loads(raw or b"{}"))
        except ValueError:
            status, obj = 400, {"error": {"message": "request body is not JSON"}}
    elif parts == ["batches"] and method == "GET":
        status, obj = api.list()
    elif parts[0] == "batches" and len(parts) == 2 and method == "GET":
        status, obj = api.get(parts[1])
    elif parts[0] == "batches" and len(parts) == 3 and parts[2] == "cancel" and method == "POST":
        status, obj = api.cancel(parts[1])
    else:
        status, obj = 404, {"error": {"message": f"no route {method} {handler.path}"}}
    if isinstance(obj, bytes):
        handler._send(status, obj, "application/octet-stream")
    else:
        handler._json(status, obj)
    return True


def _err(message: str) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()
