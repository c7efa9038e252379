"""The symbolic worker: a persistent child process that runs the slow, hang-prone part of grading under a timeout.

Contract: ``SymbolicWorker.call(op, args, timeout)`` runs ``HANDLERS[op](*args)`` in a child Python process
(``python -m cft_lab.eval.grading._child``) and returns its result, or raises ``GradeTimeout`` after ``timeout`` seconds
(the child is then killed with SIGKILL and a replacement is started at once) or ``WorkerError`` when the
handler raised (the child survives) or the child died (a new one starts on the next call). Ops: ``math_equal``
(steps 3–8 of the math grader, with sympy), ``grade_math`` (all of it, for very long answers), ``math_verify`` and
``mv_extract`` (math-verify), ``ping``.

Why a process and not a thread or ``signal.alarm``: sympy cannot be interrupted from another thread, and
math-verify's own ``signal.alarm`` timeout silently returns False outside the main thread (docs/pitfalls.md#evaluation,
"Evaluation"). So math-verify runs here with its timeouts disabled (``parsing_timeout=None``,
``timeout_seconds=None``) and the process boundary is the timeout.

Why not a one-worker pebble pool (``grade_batch`` does use pebble): it would also kill and replace on timeout, but
this client additionally starts the replacement at once and never charges a fresh child's start-up (sympy imports,
1–2 s under load) to an item's timeout, caps the child's memory and ties its life to the parent's, in ~150 lines;
a round trip costs ~15 µs here against ~170 µs through a pebble pool (measured on the project machine).

Messages are length-prefixed pickles over the child's stdin/stdout (the child moves its own stdout to stderr
first, so a stray print cannot corrupt the stream). The child exits when its parent dies (a watchdog thread), so a
grading process killed by ``grade_batch``'s safety net leaves no orphan. Its address space is capped
(``CFT_LAB_GRADING_MEM_MB``, default 4096) so a runaway sympy expansion ends in a MemoryError, not in the machine
swapping. ``default_worker()`` is one worker per process (re-created after ``fork``), guarded by a lock.
"""

from __future__ import annotations

import atexit
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

_HEADER = struct.Struct("!Q")
STARTUP_TIMEOUT = 180.0  # seconds for a fresh child to import sympy & co. (not charged to any item)
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])  # the folder holding the cft_lab package


class GradeTimeout(Exception):
    """The worker did not answer within the item's timeout; it was killed."""


class WorkerError(Exception):
    """The handler raised in the worker, or the worker process died."""


def _write_frame(fd: int, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise GradeTimeout
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int, deadline: float | None = None):
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    return pickle.loads(_read_exact(fd, size, deadline))


class SymbolicWorker:
    """Client side of one child process (module doc)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._ready = False
        self._owner = os.getpid()
        self._lock = threading.Lock()
        self.restarts = 0

    def _spawn(self) -> None:
        """Start a child without waiting for it (it imports sympy & co. while the caller goes on)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("OMP_NUM_THREADS", "1")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "cft_lab.eval.grading._child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            env=env,
            close_fds=True,
        )
        self._ready = False

    def _wait_ready(self) -> None:
        try:
            msg = _read_frame(self._proc.stdout.fileno(), time.monotonic() + STARTUP_TIMEOUT)
        except (GradeTimeout, EOFError) as e:
            self._kill()
            raise WorkerError(f"symbolic worker failed to start ({type(e).__name__}); see its stderr") from e
        if msg != ("ready",):
            self._kill()
            raise WorkerError(f"symbolic worker sent {msg!r} instead of ready")
        self._ready = True

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.kill()
            except OSError:
                pass
            proc.wait()
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass

    def call(self, op: str, args: tuple, timeout: float):
        """``HANDLERS[op](*args)`` in the child, within ``timeout`` seconds (module doc)."""
        with self._lock:
            if self._owner != os.getpid():  # inherited through fork: that child process is not ours to talk to
                self._proc, self._ready, self._owner = None, False, os.getpid()
            if self._proc is None or self._proc.poll() is not None:
                if self._proc is not None:
                    self._kill()
                    self.restarts += 1
                self._spawn()
            if not self._ready:  # startup time is not charged to the item
                self._wait_ready()
            try:
                _write_frame(self._proc.stdin.fileno(), (op, args))
                status, value = _read_frame(self._proc.stdout.fileno(), time.monotonic() + timeout)
            except GradeTimeout:
                self._kill()
                self.restarts += 1
                self._spawn()  # the replacement starts up while the caller records the timeout
                raise GradeTimeout(f"{op} did not finish within {timeout:g}s") from None
            except (EOFError, BrokenPipeError, OSError) as e:
                self._kill()
                self.restarts += 1
                raise WorkerError(f"symbolic worker died during {op} ({type(e).__name__})") from e
        if status != "ok":
            raise WorkerError(value)
        return value

    def close(self) -> None:
        with self._lock:
            if self._owner == os.getpid():
                self._kill()


_DEFAULT: SymbolicWorker | None = None
_DEFAULT_LOCK = threading.Lock()


def default_worker() -> SymbolicWorker:
    """This process's shared worker, started on first use and stopped at exit."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = SymbolicWorker()
            atexit.register(_DEFAULT.close)
        return _DEFAULT


# ---------------------------------------------------------------- child side


def _op_math_equal(prediction: str, reference: str, paper: bool):
    from cft_lab.eval.grading.equal import math_equal

    tags: list[str] = []
    return math_equal(prediction, reference, paper, tags), tuple(tags)


def _op_grade_math(output: str, gold: str, benchmark: str, paper: bool):
    from cft_lab.eval.grading.core import prepare_math
    from cft_lab.eval.grading.equal import math_equal

    scored, quirks = prepare_math(output, gold, benchmark, paper)
    tags: list[str] = []
    return scored, tuple(quirks), math_equal(scored, gold, paper, tags), tuple(tags)


def _op_math_verify(output: str, gold: str, letters: str | None):
    from cft_lab.eval.grading.mv import mv_grade

    return mv_grade(output, gold, letters)


def _op_mv_extract(output: str, letters: str | None):
    from cft_lab.eval.grading.mv import mv_extract

    return mv_extract(output, letters)


HANDLERS = {
    "math_equal": _op_math_equal,
    "grade_math": _op_grade_math,
    "math_verify": _op_math_verify,
    "mv_extract": _op_mv_extract,
    "ping": lambda: os.getpid(),
}


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def _limit_memory() -> None:
    try:
        import resource

        limit = int(os.environ.get("CFT_LAB_GRADING_MEM_MB", "4096")) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass


def main() -> None:
    out = os.dup(1)
    os.dup2(2, 1)  # anything printed by sympy & co. goes to stderr, never into the message stream
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    _limit_memory()
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    import importlib

    # the heavy imports, before "ready"
    for module in ("sympy", "cft_lab.eval.grading.equal", "cft_lab.eval.grading.mv"):
        importlib.import_module(module)

    try:
        _write_frame(out, ("ready",))
        while True:
            try:
                op, args = _read_frame(0)
            except EOFError:
                return
            try:
                reply = ("ok", HANDLERS[op](*args))
            except BaseException as e:  # noqa: BLE001 (a handler's failure is the item's error, not the worker's)
                reply = ("err", f"{op}: {type(e).__name__}: {e}"[:2000])
            _write_frame(out, reply)
    except OSError:  # the parent is gone (e.g. it exited while this replacement was starting): nothing to report
        return
