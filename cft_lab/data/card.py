"""The dataset card: what a built record set holds, written as ``card.json`` and ``card.md`` beside it.

Contract
--------
``build_card(records, *, tokenizer=None, cutoff_len=None, objective_configs=None, truncation="paper",
provenance=None)`` returns a JSON-safe dict:

* ``records``; counts ``by_source`` (``source["name"]``), ``by_status`` (ok / failed / budget_exhausted /
  no_teacher, all four always present), ``by_response_source``, ``by_teacher``;
* ``verdicts``: right / wrong / unparsed counts among records with a critique and ``right_ratio`` = right /
  (right + wrong) (the release's is about 0.56, docs/protocol.md §1.2); ``verdict_forms`` counts every
  ``cft_lab.data.verdicts`` form, ``unparsed_by_form`` only those without a verdict;
* ``responses``: how many responses have a known truth (``response_correct``) and how many of those are wrong;
* ``agreement``: where the truth is known and a verdict was read, how often the verdict says what the truth is
  (``rate``), ``missed_errors`` (judged right, truly wrong) and ``false_alarms`` (judged wrong, truly right);
* ``teacher``: total ``cost_usd`` and ``tokens`` (prompt / completion) over all records, how many records carry
  a cost and token counts, and the failed / budget_exhausted counts with their most frequent error messages;
* ``lengths``: for question, response, critique and teacher_solution (where present): n, mean, p50, p95, max, in
  ``unit`` = ``"tokens"`` of the given tokenizer (``tokenizer`` names it) or ``"characters"`` without one;
* ``arms``: per training arm (sft, sft_verified, sft_teacher, cft, or the ``objective_configs`` given), usable
  records and why the others are left out (``cft_lab.data.records.arm_usage``, i.e. ``build_pairs``); with a
  ``cutoff_len`` (needs the tokenizer) also ``cutoff``: ``tokenize_pairs``' own counts (examples, truncated,
  dropped, loss tokens, mean/max length) under that cutoff and truncation rule, so the card shows how
  differently a 2048 cutoff cuts SFT's ``x + y`` and CFT's ``[x; y] + c`` (docs/pitfalls.md#training);
* ``usable_by_all_arms``: ids every arm can use (the matched comparison); ``provenance`` if given.

``write_card(card, dir)`` writes ``card.json`` and a human-readable ``card.md`` and returns their paths.
Truncation is not re-implemented: the card calls ``cft_lab.train.objectives.build_pairs`` and
``cft_lab.train.tokenize.tokenize_pairs`` in chunks of :data:`CHUNK` pairs (so a 50K set never holds all token ids at
once) and sums their counts.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Optional

from cft_lab.data.records import STATUSES, Record
from cft_lab.data.verdicts import FORMS, UNPARSED_FORMS
from cft_lab.train.objectives import arm_pairs, arm_usage, objectives_by_arm

CHUNK = 512
LENGTH_FIELDS = ("question", "response", "critique", "teacher_solution")


def _as_records(records: Iterable) -> list[Record]:
    out = []
    for i, r in enumerate(records):
        out.append(r if isinstance(r, Record) else Record.from_dict(r, f"record {i}"))
    return out


def _percentile(sorted_vals: list[int], q: float) -> float:
    """Linear-interpolated percentile (numpy's default rule) of an ascending list.

    >>> _percentile([1, 2, 3, 4], 50), _percentile([1, 2, 3, 4], 95), _percentile([7], 95)
    (2.5, 3.85, 7.0)
    """
    pos = (len(sorted_vals) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return round(float(sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)), 2)


def length_stats(lengths: list[int]) -> dict:
    """``{n, mean, p50, p95, max}`` of a list of lengths (``{n: 0}`` when empty).

    >>> length_stats([1, 2, 3, 10])
    {'n': 4, 'mean': 4.0, 'p50': 2.5, 'p95': 8.95, 'max': 10}
    """
    if not lengths:
        return {"n": 0}
    s = sorted(lengths)
    return {
        "n": len(s),
        "mean": round(sum(s) / len(s), 2),
        "p50": _percentile(s, 50),
        "p95": _percentile(s, 95),
        "max": s[-1],
    }


def _lengths(texts: list[str], tokenizer) -> list[int]:
    if tokenizer is None:
        return [len(t) for t in texts]
    out = []
    for i in range(0, len(texts), CHUNK):
        out += [len(ids) for ids in tokenizer(texts[i : i + CHUNK], add_special_tokens=False)["input_ids"]]
    return out


def _tokenizer_name(tokenizer) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


def cutoff_counts(pairs: list, tokenizer, cutoff_len: int, truncation: str = "paper") -> dict:
    """``tokenize_pairs``' counts for all ``pairs``, computed in chunks and summed (token ids are not kept).

    A chunk that ``tokenize_pairs`` refuses because every pair in it was dropped counts as all dropped (and, under
    ``truncation="paper"``, all truncated: only a prompt that fills the cutoff drops a pair there).
    """
    from cft_lab.train.tokenize import MaskError, tokenize_pairs

    tot = {"pairs": len(pairs), "examples": 0, "truncated": 0, "dropped": 0, "loss_tokens": 0}
    length_sum, max_len = 0.0, 0
    for i in range(0, len(pairs), CHUNK):
        chunk = pairs[i : i + CHUNK]
        try:
            _, c = tokenize_pairs(chunk, tokenizer, cutoff_len, truncation)
        except MaskError as e:
            if "were dropped" not in str(e):
                raise
            tot["dropped"] += len(chunk)
            tot["truncated"] += len(chunk) if truncation == "paper" else 0
            continue
        for k in ("examples", "truncated", "dropped", "loss_tokens"):
            tot[k] += c[k]
        length_sum += c["mean_length"] * c["examples"]
        max_len = max(max_len, c["max_length"])
    tot.update(
        cutoff_len=cutoff_len,
        truncation=truncation,
        mean_length=round(length_sum / tot["examples"], 1) if tot["examples"] else 0,
        max_length=max_len,
    )
    return tot


def build_card(
    records: Iterable,
    *,
    tokenizer=None,
    cutoff_len: Optional[int] = None,
    objective_configs=None,
    truncation: str = "paper",
    provenance: Optional[Mapping] = None,
) -> dict:
    """The card of a record set (see the module doc for every key)."""
    recs = _as_records(records)
    if cutoff_len is not None and tokenizer is None:
        raise ValueError("build_card: cutoff_len needs a tokenizer (truncation is counted in tokens)")
    n = len(recs)
    critiqued = [r for r in recs if r.critique is not None]
    right = sum(r.verdict == "right" for r in critiqued)
    wrong = sum(r.verdict == "wrong" for r in critiqued)
    forms = Counter(r.verdict_parse or "not parsed" for r in critiqued)
    known = [r for r in recs if r.response_correct is not None]
    known_wrong = sum(not r.response_correct for r in known)
    judged = [r for r in known if r.verdict is not None]
    agree = sum((r.verdict == "right") == r.response_correct for r in judged)
    tokens = {
        "prompt": sum((r.tokens or {}).get("prompt", 0) for r in recs),
        "completion": sum((r.tokens or {}).get("completion", 0) for r in recs),
    }
    errors = Counter(
        r.error.strip().splitlines()[0][:200] if r.error and r.error.strip() else "(no message)"
        for r in recs
        if r.status in ("failed", "budget_exhausted")
    )
    card: dict = {
        "records": n,
        "by_source": dict(sorted(Counter(r.source.get("name", "unknown") for r in recs).items())),
        "by_status": {s: sum(r.status == s for r in recs) for s in STATUSES},
        "by_response_source": dict(sorted(Counter(r.response_source for r in recs).items())),
        "by_teacher": dict(sorted(Counter(r.teacher["name"] for r in recs if r.teacher).items())),
        "verdicts": {
            "critiques": len(critiqued),
            "right": right,
            "wrong": wrong,
            "unparsed": len(critiqued) - right - wrong,
            "right_ratio": round(right / (right + wrong), 4) if right + wrong else None,
        },
        "verdict_forms": {f: forms[f] for f in (*FORMS, "not parsed") if forms[f]},
        "unparsed_by_form": {f: forms[f] for f in (*UNPARSED_FORMS, "not parsed") if forms[f]},
        "responses": {
            "with_response": sum(r.response is not None for r in recs),
            "known_truth": len(known),
            "wrong": known_wrong,
            "error_ratio": round(known_wrong / len(known), 4) if known else None,
        },
        "agreement": {
            "n": len(judged),
            "agree": agree,
            "rate": round(agree / len(judged), 4) if judged else None,
            "missed_errors": sum(r.verdict == "right" and not r.response_correct for r in judged),
            "false_alarms": sum(r.verdict == "wrong" and r.response_correct for r in judged),
        },
        "teacher": {
            "cost_usd": round(sum(r.cost_usd or 0.0 for r in recs), 6),
            "records_with_cost": sum(r.cost_usd is not None for r in recs),
            "tokens": tokens,
            "records_with_tokens": sum(r.tokens is not None for r in recs),
            "failed": sum(r.status == "failed" for r in recs),
            "budget_exhausted": sum(r.status == "budget_exhausted" for r in recs),
            "top_errors": dict(errors.most_common(10)),
        },
    }
    unit = "tokens" if tokenizer is not None else "characters"
    lengths: dict = {"unit": unit}
    if tokenizer is not None:
        lengths["tokenizer"] = _tokenizer_name(tokenizer)
    for f in LENGTH_FIELDS:
        texts = [getattr(r, f) for r in recs if getattr(r, f) is not None]
        lengths[f] = length_stats(_lengths(texts, tokenizer))
    card["lengths"] = lengths

    objectives = objectives_by_arm(objective_configs)
    usage = arm_usage(recs, objectives)
    card["arms"] = usage["arms"]
    card["usable_by_all_arms"] = usage["usable_by_all_arms"]
    if cutoff_len is not None:
        for arm, obj in objectives.items():
            pairs, _ = arm_pairs(recs, obj)
            card["arms"][arm]["cutoff"] = cutoff_counts(pairs, tokenizer, cutoff_len, truncation)
    if provenance is not None:
        card["provenance"] = dict(provenance)
    return card


# ---------------------------------------------------------------------- writing
def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return out + [""]


def render_markdown(card: dict) -> str:
    """``card.md``: the card's numbers as short tables."""
    v, a, t, lens = card["verdicts"], card["agreement"], card["teacher"], card["lengths"]
    lines = ["# Dataset card", "", f"{card['records']} records.", ""]
    lines += ["## Sources and status", ""]
    lines += _table(["source", "records"], [[k, n] for k, n in card["by_source"].items()])
    lines += _table(["status", "records"], [[k, n] for k, n in card["by_status"].items()])
    lines += ["## Verdicts", ""]
    lines += [
        f"{v['critiques']} critiques: {v['right']} right, {v['wrong']} wrong, {v['unparsed']} unparsed"
        + (f" (right ratio {v['right_ratio']})." if v["right_ratio"] is not None else "."),
        "",
    ]
    if card["verdict_forms"]:
        lines += _table(
            ["form", "critiques", "verdict read"],
            [[f, n, "no" if f in card["unparsed_by_form"] else "yes"] for f, n in card["verdict_forms"].items()],
        )
    r = card["responses"]
    lines += [
        f"Responses with a known truth: {r['known_truth']} ({r['wrong']} wrong, error ratio {r['error_ratio']}).",
        "",
    ]
    if a["n"]:
        lines += [
            f"Teacher verdict vs truth on {a['n']} records: {a['agree']} agree (rate {a['rate']}); "
            f"{a['missed_errors']} missed errors, {a['false_alarms']} false alarms.",
            "",
        ]
    lines += [
        "## Teacher cost",
        "",
        f"${t['cost_usd']} over {t['records_with_cost']} records; tokens: {t['tokens']['prompt']} prompt, "
        f"{t['tokens']['completion']} completion; {t['failed']} failed, "
        f"{t['budget_exhausted']} budget exhausted.",
        "",
    ]
    if t["top_errors"]:
        lines += _table(["error", "records"], [[e.replace("|", "\\|"), n] for e, n in t["top_errors"].items()])
    run = (card.get("teacher_run") or {}).get("run") or {}
    if run:
        lines += ["## Teacher run", "", _run_line(run), ""]
    unit = lens["unit"] + (f" ({lens['tokenizer']})" if "tokenizer" in lens else "")
    lines += [f"## Lengths in {unit}", ""]
    lines += _table(
        ["field", "n", "mean", "p50", "p95", "max"],
        [[f] + [lens[f].get(k) for k in ("n", "mean", "p50", "p95", "max")] for f in LENGTH_FIELDS],
    )
    lines += ["## Training arms", "", f"Records usable by every arm (matched ids): {card['usable_by_all_arms']}.", ""]
    rows = []
    for arm, d in card["arms"].items():
        c = d.get("cutoff", {})
        rows.append(
            [
                arm,
                d["usable"],
                ", ".join(f"{k}: {n}" for k, n in d["skipped"].items()),
                c.get("truncated"),
                c.get("dropped"),
                c.get("examples"),
            ]
        )
    cut = next((d["cutoff"] for d in card["arms"].values() if "cutoff" in d), None)
    head = "truncated" + (f" (cutoff {cut['cutoff_len']}, {cut['truncation']})" if cut else "")
    lines += _table(["arm", "usable", "left out", head, "dropped", "examples"], rows)
    if "provenance" in card:
        lines += [
            "## Provenance",
            "",
            "```json",
            json.dumps(card["provenance"], indent=2, ensure_ascii=False),
            "```",
            "",
        ]
    return "\n".join(lines)


def _run_line(run: dict) -> str:
    """How the teacher's last run went: asked/ok/failed, the achieved rate and what it learned about rate limits."""
    if run.get("mode") == "batch":
        return (
            f"Batch API: {run.get('asked', 0)} requests in {len(run.get('batches', []))} batches "
            f"({run.get('ok', 0)} ok, {run.get('failed', 0)} failed), ${run.get('spent_usd')} at batch prices."
        )
    limit = run.get("limit_found")
    return (
        f"{run.get('asked', 0)} requests asked ({run.get('ok', 0)} ok, {run.get('failed', 0)} failed, "
        f"{run.get('cached_keys', 0)} from the cache) in {run.get('wall_s')} s: {run.get('achieved_rps')} requests/s "
        f"with up to {run.get('max_in_flight')} of {run.get('concurrency')} in flight; {run.get('throttled_429', 0)} "
        f"answers were 429 (rate limited)"
        + (f", limit found: {limit} in flight" if limit is not None else ", no limit found")
        + (f", server-declared limit {run['declared_limit_requests']}" if run.get("declared_limit_requests") else "")
        + "."
    )


def write_card(card: dict, dir: str | Path) -> tuple[Path, Path]:
    """Write ``card.json`` and ``card.md`` into ``dir`` (created if needed); returns both paths."""
    d = Path(dir)
    d.mkdir(parents=True, exist_ok=True)
    j, m = d / "card.json", d / "card.md"
    j.write_text(json.dumps(card, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    m.write_text(render_markdown(card), encoding="utf-8")
    return j, m
