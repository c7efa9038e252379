"""``python -m cft_lab evaluate MODEL [overrides ...]``: score an existing checkpoint on benchmarks, no training.

``MODEL`` is a model option (``conf/model/<name>.yaml``: a Table 3 model, an API model such as ``gpt4o_0806``, a tiny
testbed base) or, for anything else, a local checkpoint folder or a hub id (``conf/model/checkpoint.yaml`` with
``model.path=MODEL``; a folder's content is hashed into the keys, a hub id should be pinned with
``model.revision=<sha>``). The run is one cell with ``objective=base``: its infer and grade stages, cached in the store
like every other cell, so a second call with the same model and benchmarks reads the scores back.

    python -m cft_lab evaluate qwen2_5_math_7b_instruct eval=paper_suite inference=greedy model.revision=<sha>
    python -m cft_lab evaluate /ckpt/my-cft-run eval.benchmarks=[math500,gsm8k] inference=greedy
    python -m cft_lab evaluate gpt4o_0806 eval=paper_math6 dry_run=true   # the requests and their estimated cost
    python -m cft_lab evaluate tiny_math                                   # a testbed base on the testbed benchmarks

A model from the hub or an API needs its benchmarks named (an ``eval=`` option or ``eval.benchmarks=[...]``): the
default ``eval=testbed`` only makes sense for the testbed's tiny bases. Every other override works as on the main
entry point (``inference=``, ``eval.limit=``, ``dry_run=true``, ``paths.outputs=``); the exit status is the same.
"""

from __future__ import annotations

import re
import sys

from cft_lab.paths import CONF_DIR

USAGE = "usage: python -m cft_lab evaluate MODEL [overrides ...]   (see --help)"
_PLAIN = re.compile(r"^[\w./:@+-]+$")


def overrides_for(model: str, rest: list[str]) -> list[str]:
    """The main entry point's overrides that evaluate ``model`` with the user's own ``rest``."""
    import yaml

    if (CONF_DIR / "model" / f"{model}.yaml").is_file():
        chosen = [f"model={model}"]
        source = (yaml.safe_load((CONF_DIR / "model" / f"{model}.yaml").read_text(encoding="utf-8")) or {}).get(
            "source", "hub"
        )
    else:
        if "=" in model or model.startswith(("+", "~")):
            raise ValueError(f"{model!r} looks like an override; the first argument names the model ({USAGE})")
        value = model if _PLAIN.match(model) else "'" + model.replace("\\", "\\\\").replace("'", "\\'") + "'"
        label = model.rstrip("/").split("/")[-1] or model
        label = label if _PLAIN.match(label) else "checkpoint"
        chosen = ["model=checkpoint", f"model.path={value}", f"model.label={label}"]
        source = "hub"
    named_eval = any(a.startswith(("eval=", "eval.benchmarks=")) for a in rest)
    if source != "testbed" and not named_eval:
        raise ValueError(
            f"name the benchmarks to score {model} on: an eval option (eval=paper_math6, eval=paper_suite) or "
            "eval.benchmarks=[math500,gsm8k] (the default eval=testbed is the tiny testbed's)"
        )
    if any(a.startswith(("objective=", "method=", "table=")) for a in rest):
        raise ValueError("evaluate runs no training: leave out objective=, method= and table=")
    return [*chosen, "objective=base", *rest]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__ if argv else USAGE, flush=True)
        return 0 if argv else 2
    try:
        args = overrides_for(argv[0], argv[1:])
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    from cft_lab import app

    app.run(args)
    from cft_lab.report.callback import FAILED

    return 1 if FAILED else 0
