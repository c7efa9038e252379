"""The evaluation engine behind the ``select``, ``infer`` and ``grade`` stages.

Generation (:func:`generate_benchmark`) writes one row per item, resumably::

    {"id", "index", "prompt", "seed", "outputs": [{"text", "tokens", "finish_reason"}, ...]}

Rows are appended to ``<benchmark>.partial.jsonl`` chunk by chunk (flushed and fsynced) and the file is renamed to
``<benchmark>.jsonl`` when every item is there, so an interrupted evaluation redoes only the missing items (a torn
last line is dropped and regenerated). Each item's sampling seed derives from its index: its samples do not
depend on batching or on which items were already done (with ``n`` samples, sample j uses
``inference.seed + index * n + j``).

Grading (:func:`grade_benchmark`) keeps, for every sample, the extracted answer and the verdict of every grading
mode (``paper``, ``strict``, ``math_verify``; see ``cft_lab.eval.grading``), plus the quirks of the paper's grader that
touched the item, so a run can list where the graders disagree and how much the paper's leniencies moved a number.
:func:`aggregate` turns the rows into a benchmark's scores: accuracy of the primary mode with a 95% bootstrap CI
(and the Wilson interval), every mode's accuracy, disagreements, quirk counts, timeouts, outputs cut by the
token limit and, with several samples, pass@k / maj@k / avg@k.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from cft_lab.config import InferenceConfig
from cft_lab.eval import benchmarks
from cft_lab.options import InferenceMode
from cft_lab.pipeline.store import versions
from cft_lab.testbed.answers import answer as testbed_answer

log = logging.getLogger(__name__)

CHUNK = 256  # prompts per generation call between durable writes (backends that batch one prompt list at a time)


def call_size(generator, todo: int) -> int:
    """Prompts per ``generate`` call: a backend that schedules its own batches (vLLM: ``batches_itself``) gets the
    whole benchmark in one call, so no call waits for its longest output while the engine idles; the others get
    :data:`CHUNK` (the unit of durable progress). The price of one call: an interrupted vLLM call loses that
    benchmark's unsaved generations (the other benchmarks' artefacts are kept)."""
    return max(1, todo) if getattr(generator, "batches_itself", False) else CHUNK


# ---- generation ---------------------------------------------------------------------------------------------------


def build_prompt(generator, item: dict, template: str, benchmark: str, prompt_format: str = "harness"):
    """One item's prompt as the generator takes it: chat messages for an API model, the messages through the
    tokenizer's chat template for ``model.prompt_format=chat``, else the template's pinned text (the paper's)."""
    if getattr(generator, "takes_messages", False):
        return benchmarks.messages(item, template, benchmark)
    if prompt_format == "chat" and benchmarks.get(benchmark).kind != "instruct":
        return generator.chat_prompt(benchmarks.messages(item, template, benchmark))
    return benchmarks.render(item, template, benchmark)


def _read_partial(path: Path) -> list[dict]:
    """Rows of a partial file; a torn last line (a kill mid-write) is dropped and its item regenerated."""
    if not path.is_file():
        return []
    rows = []
    lines = path.read_text(encoding="utf-8").split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 2:  # only the last line may be torn
                raise ValueError(f"{path}:{i + 1}: corrupt line in a partial generation file") from None
            log.warning("%s: dropping a torn last line (item will be regenerated)", path)
    return rows


def generate_benchmark(
    generator,
    bench_name: str,
    template: str,
    out_dir: Path,
    *,
    limit: Optional[int],
    seed: int,
    n: int = 1,
    desc: str = "",
    temperature: Optional[float] = None,
    inference: Optional[InferenceConfig] = None,
    prompt_format: str = "harness",
    category_temperatures: Optional[dict[str, float]] = None,
) -> Path:
    """Generate every (or the first ``limit``) item of a benchmark into ``out_dir/<bench>.jsonl``, resumably.

    With ``inference`` in a self-critique mode the items go through ``cft_lab.eval.modes`` instead (same file, rows
    with a per-sample ``trace``); direct inference stays here."""
    final = out_dir / f"{bench_name}.jsonl"
    if final.is_file():
        return final
    if bench_name == "mt_bench":  # two turns, the second with the model's own first answer
        from cft_lab.eval import instruct

        return instruct.generate_mt_bench(
            generator, out_dir, template=template, prompt_format=prompt_format, limit=limit, seed=seed, desc=desc,
            temperatures=category_temperatures,
        )  # fmt: skip
    if inference is not None and inference.mode != InferenceMode.direct:
        from cft_lab.eval import modes as inference_modes

        return inference_modes.generate_benchmark(
            generator, bench_name, template, out_dir, inference=inference, limit=limit, seed=seed, desc=desc
        )
    partial = out_dir / f"{bench_name}.partial.jsonl"
    bench = benchmarks.get(bench_name)
    items = benchmarks.items(bench_name, limit)
    done = {r["id"]: r for r in _read_partial(partial)}
    todo = [it for it in items if it["id"] not in done]
    if done:
        log.info("%s: resuming, %d of %d items already generated", bench_name, len(items) - len(todo), len(items))
    with partial.open("w", encoding="utf-8") as f:  # rewrite the good rows (drops a torn tail), then append
        for r in done.values():
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        f.flush()
        size = call_size(generator, len(todo))
        for start in range(0, len(todo), size):
            chunk = todo[start : start + size]
            prompts = [build_prompt(generator, it, template, bench_name, prompt_format) for it in chunk]
            seeds = [seed + it["index"] * n for it in chunk]  # sample j of item i: seed + i*n + j (vLLM's rule)
            outs = generator.generate(
                prompts,
                list(bench.stops),
                seeds=seeds,
                temperature=temperature,
                desc=f"{desc or bench_name} [{start + len(done)}/{len(items)}]",
            )
            for it, p, s, completions in zip(chunk, prompts, seeds, outs):
                row = {
                    "id": it["id"],
                    "index": it["index"],
                    "prompt": p,
                    "seed": s,
                    "outputs": [
                        {"text": c.text, "tokens": c.tokens, "finish_reason": c.finish_reason} for c in completions
                    ],
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                done[it["id"]] = row
            f.flush()
            os.fsync(f.fileno())
    order = {it["id"]: i for i, it in enumerate(items)}
    rows = sorted((r for r in done.values() if r["id"] in order), key=lambda r: order[r["id"]])
    tmp = final.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(final)
    partial.unlink()
    return final


# ---- grading ------------------------------------------------------------------------------------------------------


def grade_benchmark(
    bench_name: str,
    rows: list[dict],
    modes: Sequence[str],
    *,
    timeout: float = 3.0,
    workers: Optional[int] = None,
    judge=None,
) -> list[dict]:
    """Grade generated rows: per sample, each mode's extracted answer, verdict and status (IF-Eval: each
    instruction's strict and loose verdict; MT-Bench: the ``judge``'s ratings, ``(judge config, client)``)."""
    bench = benchmarks.get(bench_name)
    items = {it["id"]: it for it in benchmarks.items(bench_name)}
    if bench.grader == "ifeval":
        from cft_lab.eval import instruct

        return instruct.grade_ifeval(rows, items)
    if bench.grader == "mt_bench":
        from cft_lab.eval import instruct

        if judge is None:
            raise ValueError("mt_bench is judged: pass judge=(judge config, client) (cft_lab.eval.instruct.make_judge)")
        return instruct.judge_mt_bench(rows, items, *judge)
    graded = []
    if bench.kind == "testbed":  # one exact grader: the testbed's answers are integers
        for r in rows:
            it = items[r["id"]]
            samples = [
                {
                    "output": o["text"],
                    "tokens": o["tokens"],
                    "finish_reason": o["finish_reason"],
                    "pred": {"testbed": testbed_answer(o["text"])},
                    "correct": {"testbed": bench.grade(o["text"], it["gold"])},
                }
                for o in r["outputs"]
            ]
            for sample, trace in zip(samples, r.get("trace", [])):
                sample["trace"] = _graded_trace(trace, lambda text, gold=it["gold"]: bench.grade(text, gold))
            graded.append(
                {
                    "id": r["id"],
                    "index": r["index"],
                    "prompt": r["prompt"],
                    "gold": it["gold"],
                    "samples": samples,
                    "correct": samples[0]["correct"]["testbed"],
                    "quirks": [],
                }
            )
        return graded
    from cft_lab.eval import grading

    # each sample carries every mode's gold (the paper's cleanup mangles a few), MMLU-Pro's option count (for the
    # harness's seeded guess when no letter is found) and the gold's own quirks (counted per run)
    batch = [
        grading.Item(
            o["text"],
            items[r["id"]]["golds"],
            bench.grader,
            items[r["id"]].get("n_options"),
            tuple(items[r["id"]].get("quirks", ())),
        )
        for r in rows
        for o in r["outputs"]
    ]
    res = grading.grade_batch(batch, modes=tuple(modes), timeout=timeout, workers=workers, progress=True)
    per_sample = [tuple(v[m] for m in modes) for v in res]  # [(paper verdict, strict verdict, ...), ...]
    k = 0
    primary = modes[0]
    # self-critique traces: every round's solution (and a single-pass output's initial part), in the primary mode
    traced = [
        (r, text)
        for r in rows
        for t in r.get("trace", [])
        for text in ([x["solution"] for x in t["rounds"]] if "rounds" in t else [t["initial"]])
    ]
    trace_verdicts = iter(
        grading.grade_batch(
            [
                grading.Item(text, items[r["id"]]["golds"], bench.grader, items[r["id"]].get("n_options"))
                for r, text in traced
            ],
            modes=(primary,),
            timeout=timeout,
            workers=workers,
            progress=bool(traced),
        )
    )
    for r in rows:
        it = items[r["id"]]
        samples = []
        quirks: set[str] = set()
        for o in r["outputs"]:
            vs = dict(zip(modes, per_sample[k]))
            k += 1
            for v in vs.values():
                quirks.update(v.quirks)
            samples.append(
                {
                    "output": o["text"],
                    "tokens": o["tokens"],
                    "finish_reason": o["finish_reason"],
                    "pred": {m: v.pred for m, v in vs.items()},
                    "correct": {m: bool(v.correct) for m, v in vs.items()},
                    "status": {m: v.status for m, v in vs.items()},
                    **(
                        {"error": {m: v.error for m, v in vs.items() if v.error}}
                        if any(v.error for v in vs.values())
                        else {}
                    ),
                }
            )
        for sample, trace in zip(samples, r.get("trace", [])):
            sample["trace"] = _graded_trace(trace, lambda _text: bool(next(trace_verdicts)[primary].correct))
        graded.append(
            {
                "id": r["id"],
                "index": r["index"],
                "prompt": r["prompt"],
                "gold": it["gold"],
                "golds": it["golds"],
                "samples": samples,
                "correct": samples[0]["correct"][primary],
                "quirks": sorted(quirks),
            }
        )
    return graded


def _graded_trace(trace: dict, is_correct) -> dict:
    """A trace with each round's solution (or a single-pass output's initial part) marked correct or not."""
    out = dict(trace)
    if "rounds" in trace:
        out["rounds"] = [{**x, "correct": bool(is_correct(x["solution"]))} for x in trace["rounds"]]
    else:
        out["initial_correct"] = bool(is_correct(trace["initial"]))
    return out


def mode_stats(graded: list[dict], primary: str) -> dict:
    """What a self-critique mode did, over every sample's trace: rounds, tokens, how often the model's own verdict
    matched the truth, and how often a new attempt fixed or broke an answer (docs/protocol.md §4.7)."""
    samples = [s for g in graded for s in g["samples"]]
    traces = [s["trace"] for s in samples if "trace" in s]
    n_items = max(1, len(graded))
    if not traces:  # direct inference
        tokens = sum(s["tokens"] for s in samples)
        return {
            "mode": "direct",
            "mean_rounds": 1.0,
            "tokens_per_item": round(tokens / n_items, 2),
            "tokens_per_sample": round(tokens / max(1, len(samples)), 2),
        }
    tokens = sum(t["tokens"] for t in traces)
    out: dict = {"tokens_per_item": round(tokens / n_items, 2), "tokens_per_sample": round(tokens / len(traces), 2)}
    if "rounds" not in traces[0]:  # single pass: the critique judges the initial solution
        final = [bool(s["correct"][primary]) for s in samples if "trace" in s]
        initial = [t["initial_correct"] for t in traces]
        parsed = [(t["verdict"], ok) for t, ok in zip(traces, initial) if t["verdict"] is not None]
        out.update(
            mode="single_pass",
            mean_rounds=1.0,
            with_critique=sum(t["critique"] is not None for t in traces),
            flagged_wrong=sum(t["flagged_wrong"] for t in traces),
            with_correction=sum(t["has_correction"] for t in traces),
            verdicts_parsed=len(parsed),
            verdicts_unparsed=len(traces) - len(parsed),
            self_verdict_accuracy=round(100 * sum((v == "right") == ok for v, ok in parsed) / len(parsed), 2)
            if parsed
            else None,
            initial_accuracy=round(100 * sum(initial) / len(initial), 4),
            fixed=sum(not a and b for a, b in zip(initial, final)),
            broke=sum(a and not b for a, b in zip(initial, final)),
        )
        return out
    rounds = [t["rounds"] for t in traces]
    critiques = [x for rs in rounds for x in rs if "judged" in x]
    parsed = [x for x in critiques if x["verdict"] is not None]
    steps = [(a["correct"], b["correct"]) for rs in rounds for a, b in zip(rs, rs[1:])]
    first = [rs[0]["correct"] for rs in rounds]
    final = [rs[t["answer_round"]]["correct"] for rs, t in zip(rounds, traces)]
    out.update(
        mode="self_verify" if traces[0]["stop"].startswith("voted") else "two_stage",
        mean_rounds=round(sum(len(rs) for rs in rounds) / len(rounds), 4),
        stops=dict(Counter(t["stop"] for t in traces)),
        critiques=len(critiques),
        verdicts_parsed=len(parsed),
        verdicts_unparsed=len(critiques) - len(parsed),
        verdict_forms=dict(Counter(x["verdict_form"] for x in critiques)),
        self_verdict_accuracy=round(
            100 * sum((x["verdict"] == "right") == x["correct"] for x in parsed) / len(parsed), 2
        )
        if parsed
        else None,
        judged_right_when_wrong=sum(x["judged"] == "right" and not x["correct"] for x in critiques),
        judged_wrong_when_right=sum(x["judged"] == "wrong" and x["correct"] for x in critiques),
        first_accuracy=round(100 * sum(first) / len(first), 4),
        rerolls=len(steps),
        reroll_fixed=sum(not a and b for a, b in steps),
        reroll_broke=sum(a and not b for a, b in steps),
        fixed=sum(not a and b for a, b in zip(first, final)),
        broke=sum(a and not b for a, b in zip(first, final)),
    )
    return out


def aggregate(bench_name: str, graded: list[dict], modes: Sequence[str], *, n_boot: int = 10000, seed: int = 0) -> dict:
    """A benchmark's scores from its graded rows (accuracy in percent; CIs are 95%)."""
    from cft_lab.eval import metrics

    bench = benchmarks.get(bench_name)
    if bench.grader in ("ifeval", "mt_bench"):
        from cft_lab.eval import instruct

        if bench.grader == "ifeval":
            return instruct.aggregate_ifeval(bench.label, graded, n_boot=n_boot, seed=seed)
        judge = graded[0]["judge"] if graded and "judge" in graded[0] else {}
        return instruct.aggregate_mt_bench(bench.label, graded, judge, n_boot=n_boot, seed=seed)
    modes = ["testbed"] if bench.kind == "testbed" else list(modes)
    primary = modes[0]
    first = [bool(g["samples"][0]["correct"][primary]) for g in graded]
    out = {"label": bench.label, "mode": primary, **metrics.score_items(first, n_boot=n_boot, seed=seed)}
    # the table's CI is the bootstrap one; the Wilson interval stays beside it
    out["wilson_low"], out["wilson_high"] = out["ci_low"], out["ci_high"]
    out["ci_low"], out["ci_high"], out["ci_method"] = out["boot_low"], out["boot_high"], "bootstrap"
    out["modes"] = {
        m: round(100.0 * sum(g["samples"][0]["correct"][m] for g in graded) / max(1, len(graded)), 4) for m in modes
    }
    disagree = [g["id"] for g in graded if len({g["samples"][0]["correct"][m] for m in modes}) > 1]
    out["disagreements"] = len(disagree)
    out["disagreement_ids"] = disagree[:100]
    statuses = [s.get("status", {}) for g in graded for s in g["samples"]]
    out["timeouts"] = {m: sum(st.get(m) == "timeout" for st in statuses) for m in modes}
    out["errors"] = {m: sum(st.get(m) == "error" for st in statuses) for m in modes}
    out["truncated_outputs"] = sum(s["finish_reason"] == "length" for g in graded for s in g["samples"])
    quirks: dict[str, int] = {}
    for g in graded:
        for q in g.get("quirks", []):
            quirks[q] = quirks.get(q, 0) + 1
    out["quirks"] = quirks
    n_samples = min((len(g["samples"]) for g in graded), default=1)
    out["samples_per_item"] = n_samples
    if n_samples > 1:
        corr = [[bool(s["correct"][primary]) for s in g["samples"]] for g in graded]
        preds = [[str(s.get("pred", {}).get(primary, s["output"])) for s in g["samples"]] for g in graded]
        ks = sorted({1, *[k for k in (2, 4, 8, 16, 32, 64) if k <= n_samples], n_samples})
        out["pass_at_k"] = {str(k): round(100 * metrics.mean_pass_at_k(corr, k), 4) for k in ks}
        out["maj_at_k"] = {str(k): round(100 * metrics.maj_at_k(preds, corr, k), 4) for k in ks}
        out["avg_at_k"] = {str(k): round(100 * metrics.avg_at_k(corr, k), 4) for k in ks}
    out["inference"] = mode_stats(graded, primary)
    return out


# ---- provenance ---------------------------------------------------------------------------------------------------


def git_sha() -> Optional[str]:
    """The checkout's commit (with ``-dirty`` when it has uncommitted changes), or None outside a git checkout."""
    from cft_lab.paths import REPO_ROOT as root

    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(
    bench_names: list[str],
    model_template: str,
    inference: dict,
    generator_info: Optional[dict],
    modes: Sequence[str],
    timeout: float,
) -> dict:
    """What must sit next to every score: versions, code, templates, sampling and grading settings."""
    from cft_lab.prompts import template_hash

    templates = {}
    for b in bench_names:
        bench = benchmarks.get(b)
        t = benchmarks.template_for(b, model_template)
        templates[b] = {"template": t, "hash": template_hash(t), "stops": list(bench.stops)}
    return {
        "versions": versions(),
        "git_sha": git_sha(),
        "templates": templates,
        "sampling": inference,
        "generator": generator_info,
        "grading": {"modes": [str(m) for m in modes], "timeout_s": timeout},
        "gpqa_seed": benchmarks.GPQA_SEED,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
