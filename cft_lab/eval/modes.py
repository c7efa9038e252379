"""Self-critique inference modes (docs/protocol.md §4.7, §10): a model solves, critiques its own solution and, by the
mode's rule, tries again or votes. Direct inference is ``cft_lab.eval.engine.generate_benchmark``'s own path; the
other modes run here, on the same generator, and write the same per-item rows plus a per-sample ``trace``.

Modes (``inference.mode``; settings ``inference.self_critique``):

``single_pass``  one generation with the self-critique instruction (solve, critique, correct if wrong). The graded
                 answer is the whole output's last ``\\boxed{}``; the trace splits the output at its "Critique" marker
                 into the initial solution and the critique (whose verdict is read), and says whether a corrected
                 solution follows.
``two_stage``    solve with the benchmark's prompt; critique that solution in a separate call (the CFT training
                 prompt); while the verdict is "wrong" (an unreadable verdict counts as ``unparsed_verdict``), solve
                 again from the same prompt (no feedback), up to ``max_rounds`` rounds. The answer is the first
                 solution judged right, else the last one. Every round's critique is generated, the last included, as
                 in the paper's loop.
``self_verify``  sample ``candidates`` solutions, critique each, and vote among the answers of those judged right
                 (among all candidates when none is): self-verified best-of-n, beyond the paper.

**One batched call per step.** All chains (item x sample) whose next step is a solve go into one generation call,
then all pending critiques into another (``self_verify`` asks every candidate in one call), never a per-item loop;
each call is split into chunks of ``cft_lab.eval.engine.CHUNK`` prompts only to make progress durable (a backend
that batches itself, vLLM, gets each step's prompts in one call).

**Seeds.** Step ``s`` of round ``r`` of sample ``j`` of item ``i`` is drawn with seed
``seed + i*n + j + (2r + s) * STRIDE`` (``s`` = 0 solve, 1 critique): round 0's solve uses exactly the seed of direct
inference at the same temperature, so a two-stage run's first solutions are the direct run's outputs and the two
can be compared item by item; every other step has its own seed whatever else is in the batch.

**Resume.** Every finished step is appended to ``<benchmark>.events.jsonl`` (flushed and fsynced per chunk) as
``{"i", "j", "round", "step", "seed", "prompt", "text", "tokens", "finish_reason"}``; a rerun replays the events and
asks only for the steps that are missing, so an interruption in the middle of a round costs at most one chunk. A
torn last line is dropped. When every chain is finished the rows are written to ``<benchmark>.jsonl`` and the events
file is removed.

Row (one per item)::

    {"id", "index", "prompt", "seed", "mode",
     "outputs": [{"text", "tokens", "finish_reason"}, ...n],     # the answer of each sample: what is graded
     "trace": [{"rounds": [{"solution", "solution_tokens", "solution_finish", "critique", "critique_tokens",
                            "verdict", "verdict_form", "judged"}, ...],
                "answer_round", "stop", "tokens"}, ...n]}        # single_pass: {"initial", "critique", ...}
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from cft_lab.config import InferenceConfig, SelfCritiqueConfig
from cft_lab.data.verdicts import parse_verdict
from cft_lab.eval import benchmarks
from cft_lab.eval.engine import call_size
from cft_lab.options import InferenceMode, VerdictRule
from cft_lab.prompts import self_critique

log = logging.getLogger(__name__)

STRIDE = 2**24  # seed offset between (round, step) pairs: above items x samples of any benchmark (MMLU-Pro: 12032)
SOLVE, CRITIQUE, SINGLE = "solve", "critique", "single"
_CRITIQUE_MARK = re.compile(r"^[ \t#>*_]*critique[ \t*_]*:?[ \t*_]*$|^[ \t#>*_]*critique[ \t*_]*:", re.I | re.M)
_CORRECTION_MARK = re.compile(r"corrected solution", re.I)


def step_seed(seed: int, i: int, j: int, n: int, rnd: int, step: str) -> int:
    """The seed of one step (see the module doc).

    >>> step_seed(0, i=3, j=1, n=2, rnd=0, step="solve"), step_seed(0, 3, 1, 2, 0, "critique") - 7
    (7, 16777216)
    """
    return seed + i * n + j + (2 * rnd + (1 if step == CRITIQUE else 0)) * STRIDE


@dataclass
class Chain:
    """One sample's chain of steps for one item."""

    i: int  # item position in the benchmark's item list (its ``index``)
    j: int  # sample
    item: dict
    rounds: list[dict] = field(default_factory=list)  # {"solve": event, "critique": event} per round
    single: Optional[dict] = None  # single_pass: its one event

    def event(self, rnd: int, step: str) -> Optional[dict]:
        return self.rounds[rnd].get(step) if rnd < len(self.rounds) else None

    def record(self, ev: dict) -> None:
        if ev["step"] == SINGLE:
            self.single = ev
            return
        while len(self.rounds) <= ev["round"]:
            self.rounds.append({})
        self.rounds[ev["round"]][ev["step"]] = ev


def judged(text: Optional[str], rule: VerdictRule) -> tuple[str, Optional[str], str]:
    """(what the loop acts on: "right"/"wrong", the verdict as read or None, the parser's form)."""
    p = parse_verdict(text)
    return (p.verdict if p.verdict is not None else str(rule)), p.verdict, p.form


# ---- the rule of each mode: the next steps of a chain, and its answer ------------------------------------------


def next_steps(mode: InferenceMode, sc: SelfCritiqueConfig, chain: Chain) -> list[tuple[str, int]]:
    """The steps this chain needs next, all of one kind (empty when it is finished)."""
    if mode == InferenceMode.single_pass:
        return [] if chain.single is not None else [(SINGLE, 0)]
    if mode == InferenceMode.self_verify:
        solves = [(SOLVE, r) for r in range(sc.candidates) if chain.event(r, SOLVE) is None]
        return solves or [(CRITIQUE, r) for r in range(sc.candidates) if chain.event(r, CRITIQUE) is None]
    if mode == InferenceMode.two_stage:
        if not chain.rounds:
            return [(SOLVE, 0)]
        r = len(chain.rounds) - 1
        if chain.event(r, SOLVE) is None:
            return [(SOLVE, r)]
        if chain.event(r, CRITIQUE) is None:
            return [(CRITIQUE, r)]
        if judged(chain.rounds[r][CRITIQUE]["text"], sc.unparsed_verdict)[0] == "right" or r + 1 >= sc.max_rounds:
            return []
        return [(SOLVE, r + 1)]
    raise ValueError(f"inference.mode={mode}: not a self-critique mode")


def _round_trace(rnd: dict, rule: VerdictRule) -> dict:
    out = {
        "solution": rnd[SOLVE]["text"],
        "solution_tokens": rnd[SOLVE]["tokens"],
        "solution_finish": rnd[SOLVE]["finish_reason"],
    }
    if CRITIQUE in rnd:
        act, verdict, form = judged(rnd[CRITIQUE]["text"], rule)
        out.update(
            critique=rnd[CRITIQUE]["text"],
            critique_tokens=rnd[CRITIQUE]["tokens"],
            verdict=verdict,
            verdict_form=form,
            judged=act,
        )
    return out


def split_single_pass(text: str) -> dict:
    """The parts of a single-pass output: the initial solution (before the last line-leading "Critique" marker), the
    critique after it, and whether a corrected solution follows.

    >>> out = "x = 2. \\\\boxed{2}\\nCritique:\\nWrong.\\nConclusion: wrong [END]\\nCorrected solution: \\\\boxed{3}"
    >>> p = split_single_pass(out)
    >>> p["initial"], p["verdict"], p["has_correction"]
    ('x = 2. \\\\boxed{2}', 'wrong', True)
    """
    marks = list(_CRITIQUE_MARK.finditer(text))
    if not marks:
        return {"initial": text, "critique": None, "verdict": None, "verdict_form": "missing", "has_correction": False}
    m = marks[0]
    critique = text[m.start() :]
    correction = _CORRECTION_MARK.search(critique)
    verdict = parse_verdict(critique[: correction.start()] if correction else critique)
    return {
        "initial": text[: m.start()].rstrip(),
        "critique": critique,
        "verdict": verdict.verdict,
        "verdict_form": verdict.form,
        "has_correction": correction is not None,
    }


def _answer_key(text: str, bench: benchmarks.Benchmark) -> str:
    """The answer a vote counts (the paper grader's extraction; the testbed's boxed integer)."""
    if bench.kind == "testbed":
        from cft_lab.testbed.answers import answer

        return answer(text)
    from cft_lab.eval.grading import extract_answer

    try:
        return extract_answer(text, bench.grader, "paper")
    except Exception:  # a pathological output: it votes for nothing
        return ""


def finish(mode: InferenceMode, sc: SelfCritiqueConfig, chain: Chain, bench: benchmarks.Benchmark) -> tuple[dict, dict]:
    """(the graded output, the trace) of a finished chain."""
    rule = sc.unparsed_verdict
    if mode == InferenceMode.single_pass:
        ev = chain.single
        assert ev is not None
        trace = {**split_single_pass(ev["text"]), "tokens": ev["tokens"]}
        trace["flagged_wrong"] = trace["verdict"] == "wrong"
        return {"text": ev["text"], "tokens": ev["tokens"], "finish_reason": ev["finish_reason"]}, trace
    rounds = [_round_trace(r, rule) for r in chain.rounds]
    total = sum(r["solution_tokens"] + r.get("critique_tokens", 0) for r in rounds)
    if mode == InferenceMode.two_stage:
        right = [k for k, r in enumerate(rounds) if r.get("judged") == "right"]
        pick = right[0] if right else len(rounds) - 1
        stop = "judged_right" if right else "round_limit"
    else:  # self_verify: vote among those judged right, else among all
        keys = [_answer_key(r["solution"], bench) for r in rounds]
        pool = [k for k, r in enumerate(rounds) if r.get("judged") == "right"] or list(range(len(rounds)))
        votes = Counter(keys[k] for k in pool if keys[k])
        winner = votes.most_common(1)[0][0] if votes else None
        pick = next((k for k in pool if keys[k] == winner), pool[0])
        stop = "voted_judged_right" if any(r.get("judged") == "right" for r in rounds) else "voted_all"
    chosen = rounds[pick]
    out = {"text": chosen["solution"], "tokens": chosen["solution_tokens"], "finish_reason": chosen["solution_finish"]}
    return out, {"rounds": rounds, "answer_round": pick, "stop": stop, "tokens": total}


# ---- the batched, resumable loop ---------------------------------------------------------------------------------


def _read_events(path: Path) -> list[dict]:
    """Events of an interrupted run; a torn last line (a kill mid-write) is dropped and its step redone."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    out = []
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if k < len(lines) - 2:
                raise ValueError(f"{path}:{k + 1}: corrupt line in an events file") from None
            log.warning("%s: dropping a torn last line (that step will be asked again)", path)
    return out


def generate_benchmark(
    generator,
    bench_name: str,
    template: str,
    out_dir: Path,
    *,
    inference: InferenceConfig,
    limit: Optional[int],
    seed: int,
    desc: str = "",
    on_call: Optional[Callable[[str, int], None]] = None,
) -> Path:
    """Run ``inference.mode`` on every (or the first ``limit``) item of a benchmark into ``out_dir/<bench>.jsonl``,
    resumably. ``on_call(step, prompts)`` is called before each generation call (tests count calls with it)."""
    final = out_dir / f"{bench_name}.jsonl"
    if final.is_file():
        return final
    mode, sc, n = inference.mode, inference.self_critique, inference.n
    bench = benchmarks.get(bench_name)
    items = benchmarks.items(bench_name, limit)
    chains = [Chain(it["index"], j, it) for it in items for j in range(n)]
    by_key = {(c.i, c.j): c for c in chains}
    out_dir.mkdir(parents=True, exist_ok=True)
    events_path = out_dir / f"{bench_name}.events.jsonl"
    old = _read_events(events_path)
    for ev in old:
        if (ev["i"], ev["j"]) in by_key:
            by_key[ev["i"], ev["j"]].record(ev)
    if old:
        log.info("%s: resuming %s with %d finished steps", bench_name, mode, len(old))
    prompts = {it["index"]: benchmarks.render(it, template, bench_name) for it in items}
    open_tokens = sc.max_new_tokens or inference.max_new_tokens
    with events_path.open("w", encoding="utf-8") as f:  # rewrite the good events (drops a torn tail), then append
        for ev in old:
            f.write(json.dumps(ev, ensure_ascii=False) + "\n")
        f.flush()
        while True:
            pending = [(c, s, r) for c in chains for s, r in next_steps(mode, sc, c)]
            if not pending:
                break
            step = pending[0][1]
            batch = [p for p in pending if p[1] == step]  # every chain's next steps are of one kind at a time
            size = call_size(generator, len(batch))
            for start in range(0, len(batch), size):
                chunk = batch[start : start + size]
                texts, seeds = [], []
                for c, s, r in chunk:
                    if s == SOLVE:
                        texts.append(prompts[c.i])
                    elif s == SINGLE:
                        texts.append(self_critique.render(sc.single_pass_template, c.item["question"]))
                    else:
                        texts.append(
                            self_critique.render(sc.critique_template, c.item["question"], c.rounds[r][SOLVE]["text"])
                        )
                    seeds.append(step_seed(seed, c.i, c.j, n, r, s))
                if on_call is not None:
                    on_call(step, len(texts))
                outs = generator.generate(
                    texts,
                    list(bench.stops) if step == SOLVE else list(self_critique.OPEN_STOPS),
                    seeds=seeds,
                    n=1,
                    max_new_tokens=inference.max_new_tokens if step == SOLVE else open_tokens,
                    desc=f"{desc or bench_name} {mode} {step} [{start}/{len(batch)}]",
                )
                for (c, s, r), p, sd, o in zip(chunk, texts, seeds, outs):
                    ev = {
                        "i": c.i,
                        "j": c.j,
                        "round": r,
                        "step": s,
                        "seed": sd,
                        "prompt": p,
                        "text": o[0].text,
                        "tokens": o[0].tokens,
                        "finish_reason": o[0].finish_reason,
                    }
                    c.record(ev)
                    f.write(json.dumps(ev, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
    rows = []
    for it in items:
        outs, traces = [], []
        for j in range(n):
            o, t = finish(mode, sc, by_key[it["index"], j], bench)
            outs.append(o)
            traces.append(t)
        rows.append(
            {
                "id": it["id"],
                "index": it["index"],
                "prompt": prompts[it["index"]],
                "seed": step_seed(seed, it["index"], 0, n, 0, SOLVE),
                "mode": str(mode),
                "outputs": outs,
                "trace": traces,
            }
        )
    tmp = final.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(final)
    events_path.unlink()
    return final


def calls_per_item(mode: InferenceMode, sc: SelfCritiqueConfig) -> tuple[int, int]:
    """(at least, at most) generations per item and sample, for the dry run."""
    if mode == InferenceMode.direct or mode == InferenceMode.single_pass:
        return 1, 1
    if mode == InferenceMode.self_verify:
        return 2 * sc.candidates, 2 * sc.candidates
    return 2, 2 * sc.max_rounds


def summarize(rows: list[dict[str, Any]]) -> dict:
    """Counts over the traces of generated rows (before grading): rounds, stops and verdict forms."""
    traces = [t for r in rows for t in r.get("trace", [])]
    rounds = [len(t.get("rounds", [])) or 1 for t in traces]
    return {
        "chains": len(traces),
        "mean_rounds": round(sum(rounds) / max(1, len(rounds)), 4),
        "stops": dict(Counter(t.get("stop", "single_pass") for t in traces)),
    }
