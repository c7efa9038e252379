"""Paired comparison of two cells on the same items (e.g. SFT vs CFT): ``python -m cft_lab.eval.compare A B``.

``A`` and ``B`` are cell keys (the ``[key]`` a dry run prints, the folder names under ``store/cells``). For every
benchmark both cells graded, the per-item verdicts of the table's grading mode (the first of ``eval.modes``) are
aligned by item id and compared with :func:`cft_lab.eval.metrics.paired_test`: both accuracies, the difference B − A in
points with a paired-bootstrap 95% CI, the discordant counts and the exact McNemar p-value. Items only one cell
graded (different ``eval.limit``) are left out and counted; different grading modes are refused, because numbers
from different graders are not comparable (docs/pitfalls.md#evaluation).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cft_lab.eval.metrics import paired_test
from cft_lab.pipeline.store import Store, read_jsonl


def _grade_dir(store: Store, key: str) -> Path:
    result = store.cell_result(key)
    if result is None:
        raise FileNotFoundError(
            f"no cell {key} in {store.root}; `python -m cft_lab cells` lists the cells and their keys"
        )
    if result.get("status") != "ok":
        raise ValueError(f"cell {key} did not finish: {result.get('error')}")
    return store.path("grade", result.get("stages", {}).get("grade", key))


def paired(store: Store, key_a: str, key_b: str, *, n_boot: int = 10000, seed: int = 0) -> dict:
    """{benchmark: paired statistics} for the benchmarks both cells graded."""
    dir_a, dir_b = _grade_dir(store, key_a), _grade_dir(store, key_b)
    scores_a = json.loads((dir_a / "scores.json").read_text())
    scores_b = json.loads((dir_b / "scores.json").read_text())
    out = {}
    for bench in [b for b in scores_a if b in scores_b]:
        mode_a, mode_b = scores_a[bench].get("mode"), scores_b[bench].get("mode")
        if mode_a != mode_b:
            raise ValueError(
                f"{bench}: cell {key_a} was scored in mode {mode_a}, cell {key_b} in {mode_b}; "
                "compare numbers from one grader only"
            )
        if mode_a == "judge":  # MT-Bench: ratings on a scale, not right/wrong; no McNemar test applies
            continue
        a = {r["id"]: bool(r["correct"]) for r in read_jsonl(dir_a / f"{bench}.jsonl")}
        b = {r["id"]: bool(r["correct"]) for r in read_jsonl(dir_b / f"{bench}.jsonl")}
        common = [i for i in a if i in b]
        if not common:
            continue
        stats = paired_test([a[i] for i in common], [b[i] for i in common], n_boot=n_boot, seed=seed)
        out[bench] = {
            "label": scores_a[bench].get("label", bench),
            "mode": mode_a,
            **stats,
            "only_in_a": len(a) - len(common),
            "only_in_b": len(b) - len(common),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    """The CLI: one-line errors (an unknown key, a failed cell, two grading modes), ``--debug`` for tracebacks."""
    from cft_lab import cli

    return cli.run(_main, argv)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m cft_lab compare", description=__doc__.split("\n")[0])
    parser.add_argument("a", help="cell key A (the baseline, e.g. the best SFT row)")
    parser.add_argument("b", help="cell key B (e.g. the CFT row); differences are B - A")
    parser.add_argument("--outputs", default=None, help="outputs folder (default $CFT_LAB_OUTPUTS or outputs)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    args = parser.parse_args(argv)
    import os

    res = paired(Store(args.outputs or os.environ.get("CFT_LAB_OUTPUTS", "outputs")), args.a, args.b)
    if not res:
        raise ValueError(f"cells {args.a} and {args.b} share no graded benchmark items: nothing to compare")
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(
        f"{'benchmark':<16}{'n':>6}{'A %':>8}{'B %':>8}{'B-A':>8}  {'95% CI':<16}{'A only':>7}{'B only':>7}"
        f"{'McNemar p':>11}"
    )
    for r in res.values():
        ci = f"[{r['diff_low']:+.1f}, {r['diff_high']:+.1f}]"
        print(
            f"{r['label']:<16}{r['n']:>6}{r['accuracy_a']:>8.1f}{r['accuracy_b']:>8.1f}{r['diff']:>+8.1f}  "
            f"{ci:<16}{r['b10']:>7}{r['b01']:>7}{r['p_value']:>11.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
