"""Run a command with the loopback TEST SERVER as MT-Bench's judge: ``python -m cft_lab.testing.loopback_judge --
python -m cft_lab table=if_eval_mtbench_tiny``.

It starts :class:`cft_lab.testing.chat_server.ChatServer` on 127.0.0.1, exports its URL as ``CFT_LAB_JUDGE_URL``
(which ``conf/teacher/loopback_judge.yaml`` reads), runs the command, stops the server and exits with the command's
status. The server rates each judge prompt with a number derived from a hash of the request: the judging flow (HTTP,
request cache, retries, parsing, aggregation) runs for real; the ratings are not judgments.
"""

from __future__ import annotations

import os
import subprocess
import sys

from cft_lab.testing.chat_server import ChatServer


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: python -m cft_lab.testing.loopback_judge -- COMMAND [ARGS ...]", file=sys.stderr)
        return 2
    with ChatServer() as server:
        print(f"loopback judge (TEST SERVER, hash ratings) at {server.url}", file=sys.stderr, flush=True)
        env = {**os.environ, "CFT_LAB_JUDGE_URL": server.url}
        return subprocess.run(args, env=env).returncode


if __name__ == "__main__":
    raise SystemExit(main())
