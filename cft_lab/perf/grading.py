"""Grading throughput: ``python -m cft_lab.perf.grading [--per-benchmark N] [--modes ...] [--workers K]``.

Builds synthetic model outputs from the shipped golds of every benchmark (the first N records of each) in several
formats — ``\\boxed{}``, "The answer is X", Minerva's "Final Answer: The final answer is $X$. I hope it is
correct.", the last number of a sentence, a deliberately wrong answer, a reformatted equivalent (``\\dfrac`` for
``\\frac``, a fraction for a decimal and back) — plus adversarial ones (``10^{10^{10}}``, a 40-deep nested
``\\frac``, a huge polynomial power, 50 KB outputs). GPQA and MMLU-Pro get letter answers in their prompts'
formats, no question text (GPQA's text is never written anywhere).

Prints, per mode, items/s of ``grade_detail`` in one process and of ``grade_batch`` over all cores, the number of
timeouts and errors, the share graded correct and the slowest item. Exits non-zero if any item took longer than
its timeout + 2 s (``--timeout``). Figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from fractions import Fraction

from cft_lab.eval.benchmarks.files import load
from cft_lab.eval.grading import MODES, gold_answers, grade_batch, grade_detail, status_counts
from cft_lab.eval.grading.choice import CHOICE_LETTERS
from cft_lab.eval.grading.extract import MATH_BENCHMARKS
from cft_lab.eval.grading.parallel import _cpus
from cft_lab.eval.grading.worker import default_worker

PROSE = "Let me work through this carefully. First we simplify the expression, then we check the result. "


def _wrong(raw: str) -> str:
    try:
        return str(Fraction(raw.replace(",", "")) + 1)
    except (ValueError, ZeroDivisionError):
        return raw + "+1"


def _equivalent(raw: str) -> str:
    if "\\frac" in raw:
        return raw.replace("\\frac", "\\dfrac")
    try:
        value = Fraction(raw.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return raw.replace(" ", "")
    if value.denominator == 1:
        return f"\\frac{{{2 * value.numerator}}}{{2}}"
    return f"\\frac{{{value.numerator}}}{{{value.denominator}}}"


def math_outputs(raw: str) -> list[str]:
    """Seven outputs for one raw gold: five correct formats, one wrong, one equivalent rewrite."""
    raw = raw.strip().strip("$")
    number = raw.replace(",", "").replace(".", "", 1).lstrip("-").isdigit()
    return [
        f"{PROSE}Therefore the answer is $\\boxed{{{raw}}}$.",
        f"{PROSE}The answer is {raw}.",
        f"{PROSE}\nFinal Answer: The final answer is ${raw}$. I hope it is correct.",
        f"{PROSE}So in total we get {raw} of them" if number else f"{PROSE}We conclude $\\boxed{{{raw}}}$",
        f"{PROSE}Therefore the answer is $\\boxed{{{_wrong(raw)}}}$.",
        f"{PROSE}Hence $\\boxed{{{_equivalent(raw)}}}$.",
        f"{PROSE}Thus \\[x = {raw}\\] and the final answer is $\\boxed{{{raw}}}$.",
    ]


def choice_outputs(letter: str, letters: str, rng: random.Random) -> list[str]:
    other = rng.choice([c for c in letters if c != letter])
    return [
        f"{PROSE}The answer is ({letter}).",
        f"{PROSE}Answer: {letter}",
        f"{PROSE}so the answer is {other}.",
        f"{PROSE}the answer is a subtle one, but ({letter}) fits best.",
        f"{PROSE}I cannot decide.",
    ]


def adversarial() -> list[tuple[str, dict, str]]:
    nested = "1"
    for _ in range(40):
        nested = f"\\frac{{{nested}}}{{1+{nested[:20]}}}"
    big = (PROSE * 560)[:50_000]
    gold = {m: "5" for m in MODES}
    return [
        ("The answer is $\\boxed{10^{10^{10}}}$.", gold, "math"),
        (f"The answer is $\\boxed{{{nested}}}$.", gold, "math"),
        ("The answer is $\\boxed{(x+y+z+w)^{40}}$.", {m: "(x+y+z+w)^{41}" for m in MODES}, "math"),
        (big + " The answer is $\\boxed{5}$.", gold, "math"),
        (big, gold, "math"),
        (big + " The answer is " + "\\text{cm} " * 2000, gold, "math"),
        ("The answer is " + big, {m: "C" for m in MODES}, "gpqa", 4),
        (big.replace(" ", "\n"), {m: "C" for m in MODES}, "mmlu_pro", 10),
    ]


def build(per_benchmark: int, seed: int = 0) -> list[tuple]:
    rng = random.Random(seed)
    rows: list[tuple] = []
    for bench in MATH_BENCHMARKS:
        for rec in load(bench)[:per_benchmark]:
            golds = gold_answers(bench, rec)
            rows += [(out, golds, bench) for out in math_outputs(golds["math_verify"])]
    for bench in ("gpqa", "mmlu_pro"):
        letters = CHOICE_LETTERS[bench]
        n = len(load(bench)) if bench == "mmlu_pro" else 198  # never load GPQA's text just to count it
        for _ in range(min(per_benchmark, n)):
            k = len(letters)
            letter = letters[rng.randrange(k)]
            rows += [(out, {m: letter for m in MODES}, bench, k) for out in choice_outputs(letter, letters, rng)]
    return rows + adversarial()


def run_single(rows, mode: str, timeout: float) -> dict:
    latencies, statuses, correct = [], {"ok": 0, "timeout": 0, "error": 0}, 0
    start = time.perf_counter()
    for row in rows:
        t = time.perf_counter()
        v = grade_detail(row[0], row[1], row[2], mode, timeout, n_options=row[3] if len(row) > 3 else None)
        latencies.append(time.perf_counter() - t)
        statuses[v.status] += 1
        correct += v.correct
    wall = time.perf_counter() - start
    return {
        "items": len(rows),
        "wall_s": wall,
        "items_per_s": len(rows) / wall,
        "max_latency_s": max(latencies),
        "correct": correct,
        **statuses,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-benchmark", type=int, default=40, help="records per benchmark (7 outputs each)")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--workers", type=int, default=None, help="grade_batch processes (default: all cores)")
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--no-batch", action="store_true", help="skip the grade_batch run")
    args = ap.parse_args(argv)

    rows = build(args.per_benchmark)
    n_adv = len(adversarial())
    realistic, hostile = rows[:-n_adv], rows[-n_adv:]
    print(f"{len(realistic)} realistic + {n_adv} adversarial synthetic items, timeout {args.timeout:g}s")
    default_worker().call("ping", (), 60)  # start this process's worker outside the timed loops
    worst = 0.0
    print(
        f"{'one process':12s} {'items/s':>9s} {'wall s':>8s} {'correct':>8s} {'timeout':>8s} {'error':>6s} "
        f"{'max item s':>11s}"
    )
    for mode in args.modes:
        for label, part in (("realistic", realistic), ("adversarial", hostile)):
            r = run_single(part, mode, args.timeout)
            worst = max(worst, r["max_latency_s"])
            print(
                f"{mode:12s} {r['items_per_s']:9.1f} {r['wall_s']:8.1f} {r['correct']:8d} {r['timeout']:8d} "
                f"{r['error']:6d} {r['max_latency_s']:11.2f}   {label}"
            )
    for label, part in () if args.no_batch else (("realistic", realistic), ("all", rows)):
        start = time.perf_counter()
        results = grade_batch(part, modes=args.modes, timeout=args.timeout, workers=args.workers, progress=False)
        wall = time.perf_counter() - start
        graded = len(part) * len(args.modes)
        print(
            f"grade_batch, {label} ({len(part)} items x {len(args.modes)} modes, {args.workers or _cpus()} workers):"
            f" {wall:.1f}s = {graded / wall:.1f} verdicts/s = {len(part) / wall:.1f} items/s (all modes)"
        )
        for mode, c in status_counts(results).items():
            print(f"  {mode:12s} correct {c['correct']:6d}  timeout {c['timeout']:4d}  error {c['error']:4d}")
    # a paper item may need two worker calls (its verdict, then upstream's check of a CFT-only leniency)
    bound = 2 * args.timeout + 2.0
    if worst > bound:
        print(f"FAIL: an item took {worst:.2f}s (> {bound:g}s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
