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

**The long-output set** (``--long N``, default 150 records; 0 skips it): what real models write. N MATH problems
(seeded sample of the shipped 5,000, with their reference solutions) become chains of thought of 300-2,000 tokens
(drawn uniformly, about 3.5 characters of LaTeX-heavy text per token): worked steps taken from other MATH
solutions (their ``\\boxed`` removed, as intermediate work), then the problem's own solution, whose ``\\boxed{}``
answer ends the output. Each output is graded against three golds: its own (correct), an equivalent rewrite of it
(correct: ``\\dfrac`` for ``\\frac``, a fraction for an integer, spaces removed) and a perturbed one (wrong:
x + max(1, |x|), or ``+1`` appended), each built from that mode's own gold. Printed per mode: items/s in one process
against ``--min-items-per-s`` (200: grading must not dominate generation), verdicts that disagree with the expected
ones, and the inputs (lengths, one sample's ends);
``--require`` makes a mode under the bar an error (exit 1).
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


#: Characters per token of LaTeX-heavy English (Qwen2.5's tokenizer on MATH solutions: about 3-4); no tokenizer of
#: a real model is available offline, so lengths in tokens are this estimate.
CHARS_PER_TOKEN = 3.5
FILLER_JOIN = "\n\nLet me also work out a related step. "


def _perturbed(raw: str) -> str:
    """A wrong gold: x + max(1, |x|) of a number (x+1 is within the harness's 1e-4 relative tolerance for large x),
    else the expression plus one."""
    try:
        x = Fraction(raw.replace(",", ""))
        return str(x + max(Fraction(1), abs(x)))
    except (ValueError, ZeroDivisionError):
        return raw + "+1"


def long_outputs(n: int, seed: int = 0, min_tokens: int = 300, max_tokens: int = 2000) -> tuple[list[tuple], dict]:
    """The long-output set (module doc): ``(rows, inputs)`` with rows ``(output, gold, "math", expected)`` and a
    summary of what was built (records, token lengths, one sample)."""
    records = load("math")
    rng = random.Random(seed)
    rows: list[tuple] = []
    lengths: list[int] = []
    for i in rng.sample(range(len(records)), n):
        rec = records[i]
        own = rec["solution"]
        target = rng.randint(min_tokens, max_tokens) * CHARS_PER_TOKEN
        steps: list[str] = []
        size = len(own) + 40
        while size < target:
            step = records[rng.randrange(len(records))]["solution"].replace("\\boxed", "")
            if size + len(step) + len(FILLER_JOIN) > max_tokens * CHARS_PER_TOKEN:
                if size >= min_tokens * CHARS_PER_TOKEN:
                    break
                continue  # too long to fit: draw another
            steps.append(step)
            size += len(step) + len(FILLER_JOIN)
        output = "Let's think step by step.\n\n" + FILLER_JOIN.join(steps) + "\n\nNow, for this problem: " + own
        lengths.append(round(len(output) / CHARS_PER_TOKEN))
        golds = gold_answers("math", rec)  # each mode's own gold (the paper's harness keeps its gold as written)
        rows.append((output, golds, "math", True))
        rows.append((output, {m: _equivalent(g) for m, g in golds.items()}, "math", True))
        rows.append((output, {m: _perturbed(g) for m, g in golds.items()}, "math", False))
    lengths.sort()
    sample = rows[0][0]
    inputs = {
        "records": n,
        "items": len(rows),
        "source": f"MATH (shipped, 5,000 problems with solutions), seed {seed}",
        "tokens": {"min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1]},
        "chars_per_token": CHARS_PER_TOKEN,
        "sample_start": sample[:160],
        "sample_end": sample[-200:],
        "sample_golds": [rows[0][1]["math_verify"], rows[1][1]["math_verify"], rows[2][1]["math_verify"]],
    }
    return rows, inputs


def run_long(rows: list[tuple], mode: str, timeout: float) -> dict:
    """Items/s of ``grade_detail`` in one process on the long set, and the verdicts against the expected ones."""
    r = run_single([row[:3] for row in rows], mode, timeout)
    got = r.pop("verdicts")
    r["disagree"] = {
        "own gold": sum(not g for g, row in zip(got[0::3], rows[0::3])),
        "equivalent gold": sum(not g for g, row in zip(got[1::3], rows[1::3])),
        "perturbed gold": sum(bool(g) for g, row in zip(got[2::3], rows[2::3])),
    }
    return r


def run_single(rows, mode: str, timeout: float) -> dict:
    latencies, statuses, verdicts = [], {"ok": 0, "timeout": 0, "error": 0}, []
    start = time.perf_counter()
    for row in rows:
        t = time.perf_counter()
        v = grade_detail(row[0], row[1], row[2], mode, timeout, n_options=row[3] if len(row) > 3 else None)
        latencies.append(time.perf_counter() - t)
        statuses[v.status] += 1
        verdicts.append(v.correct)
    wall = time.perf_counter() - start
    return {
        "items": len(rows),
        "wall_s": wall,
        "items_per_s": len(rows) / wall,
        "max_latency_s": max(latencies),
        "correct": sum(verdicts),
        "verdicts": verdicts,
        **statuses,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-benchmark", type=int, default=40, help="records per benchmark (7 outputs each)")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--workers", type=int, default=None, help="grade_batch processes (default: all cores)")
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--no-batch", action="store_true", help="skip the grade_batch run")
    ap.add_argument("--long", type=int, default=150, help="MATH records of the long-output set (3 items each; 0: skip)")
    ap.add_argument("--min-items-per-s", type=float, default=200.0, help="the bar of the long set, per process")
    ap.add_argument("--require", action="store_true", help="exit 1 if a mode grades the long set under the bar")
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
    slow_modes = []
    if args.long:
        long_rows, inputs = long_outputs(args.long)
        tok = inputs["tokens"]
        print(
            f"\nlong outputs: {inputs['items']} items = {inputs['records']} {inputs['source']} x (own, equivalent, "
            f"perturbed gold); chains of thought of {tok['min']}-{tok['max']} tokens (median {tok['median']}, "
            f"~{inputs['chars_per_token']:g} characters per token)"
        )
        print(f"  sample start: {inputs['sample_start']!r}")
        print(f"  sample end:   {inputs['sample_end']!r}")
        print(f"  sample golds: {inputs['sample_golds']} (own, equivalent, perturbed)")
        print(f"{'one process':12s} {'items/s':>9s} {'wall s':>8s} {'timeout':>8s} {'error':>6s} {'max item s':>11s}")
        for mode in args.modes:
            r = run_long(long_rows, mode, args.timeout)
            worst = max(worst, r["max_latency_s"])
            ok = r["items_per_s"] >= args.min_items_per_s
            if not ok:
                slow_modes.append(mode)
            print(
                f"{mode:12s} {r['items_per_s']:9.1f} {r['wall_s']:8.2f} {r['timeout']:8d} {r['error']:6d} "
                f"{r['max_latency_s']:11.3f}   long; {'>=' if ok else 'UNDER'} {args.min_items_per_s:g} items/s; "
                f"verdicts unlike the expected: {r['disagree']}"
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
    if args.require and slow_modes:
        print(f"FAIL: long outputs graded under {args.min_items_per_s:g} items/s in {slow_modes}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
