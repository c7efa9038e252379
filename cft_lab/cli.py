"""One-line errors for the command-line tools (``python -m cft_lab tables|compare|cells|export``, the teacher CLI).

A user's mistake (an unknown table, a bad override, a cell key that is not in the store, an unwritable folder) ends
in ``error: <what and where>`` on stderr and exit status 2, not a traceback; ``--debug`` anywhere on the command line
keeps the traceback (and the exception) for a bug report. Hydra's composition errors carry the useful part in
their cause (OmegaConf's "key ... not in ..."); it is joined into the one line.

>>> one_line(ValueError("bad thing\\n\\twith detail"))
'bad thing; with detail'
"""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_BAD_INPUT = 2


def one_line(exc: BaseException) -> str:
    """The exception's message and its cause's, on one line (OmegaConf's multi-line details joined by ``; ``)."""
    parts = [str(exc) or type(exc).__name__]
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in parts[0]:
        parts.append(str(cause))
    lines = [line.strip() for part in parts for line in part.splitlines()]
    return "; ".join(line for line in lines if line)


def run(main: Callable[[list[str]], int | None], argv: list[str] | None = None) -> int:
    """Call ``main(argv)`` (``--debug`` removed from it); an exception becomes ``error: ...`` and exit status 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    try:
        return main(args) or 0
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        if debug:
            raise
        print(f"error: {one_line(exc)} (--debug shows the traceback)", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
