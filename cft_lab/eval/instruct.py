"""General instruction following (v4 Table 8; docs/protocol.md §4.6): IF-Eval and MT-Bench.

**IF-Eval** (541 prompts, 834 verifiable instructions). Each prompt goes to the model as written, with no chat
template (the authors' script: the raw ``prompt`` field; an API model gets it as one user message). The checks are
the maintained port of google-research's ``instruction_following_eval`` in the PyPI package ``if-verifiable``
(its ``INSTRUCTION_DICT``: one checker class per instruction id, built from the item's kwargs, and from the prompt
where a checker asks for it); the aggregation here is google's ``evaluation_main``: *strict* checks the response,
*loose* passes if any of eight variants passes (the response, without its first line, last line or both, each also
with ``*`` removed); an empty response fails every instruction (if-verifiable's own loop drops such prompts from the
instruction count, so it is not used). Reported: prompt-level and instruction-level accuracy, strict and loose; the
table's columns are instruction-level, as the paper's. Sentence counts use NLTK's English Punkt model, shipped in
``cft_lab/assets/nltk_data`` (never downloaded); ``langdetect`` is seeded (0) so the language check is deterministic.

**MT-Bench** (80 questions, two turns each). Turn 1 for every question, then turn 2 with the model's own first
answer in the conversation. The conversation reaches a local model as ChatML with the default system text (a
``qwen25-math-cot``-family model), as ``User: / Assistant:`` turns (``deepseek-math``), or through its own chat
template (``model.prompt_format=chat``); an API model gets the messages. Each turn is judged once by an
OpenAI-compatible judge (``eval.judge``: a ``conf/teacher`` option of kind openai) through the teacher's request
machinery (cache, retries, cost, budget), with FastChat's single-answer grading prompts (shipped,
``mt_bench_judge_prompts``): ``single-v1`` / ``single-v1-multi-turn``, and the ``-math-`` variants with GPT-4's
reference answers for math, reasoning and coding (FastChat's ``NEED_REF_CATS``). The rating is FastChat's
``[[x]]`` (else ``[x]``); an unparsed judgment is counted and left out of the mean, as FastChat's ``show_result``
does. Score = the mean rating over both turns (FastChat's default), with a bootstrap CI over questions.
"""

from __future__ import annotations

import json
import logging
import re
from functools import cache
from pathlib import Path
from typing import Any, Optional

from cft_lab.paths import ASSETS_DIR
from cft_lab.teachers.estimate import Estimate

log = logging.getLogger(__name__)

NLTK_DATA = ASSETS_DIR / "nltk_data"
NEED_REF_CATS = ("math", "reasoning", "coding")  # FastChat's categories judged against a reference answer
JUDGE_PROMPT_VERSION = "fastchat-single-v1"  # FastChat's judge_prompts.jsonl at 7ad1d63 (2023-07-04)
_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
MT_BENCH_STOPS = ("<|im_end|>", "<|endoftext|>", "</s>")
DEFAULT_SYSTEM = "You are a helpful assistant."


# ---- IF-Eval ------------------------------------------------------------------------------------------------------


@cache
def _registry() -> dict:
    """if-verifiable's IF-Eval checkers, with the shipped Punkt model on NLTK's path and langdetect seeded."""
    try:
        import langdetect
        import nltk
        from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT
    except ImportError as e:  # Python 3.10: if-verifiable needs 3.11
        raise ImportError(
            f"IF-Eval's checks need the package if-verifiable (Python >= 3.11): pip install if-verifiable ({e})"
        ) from e

    if str(NLTK_DATA) not in nltk.data.path:
        nltk.data.path.insert(0, str(NLTK_DATA))
    langdetect.DetectorFactory.seed = 0
    return dict(INSTRUCTION_DICT)


def loose_variants(response: str) -> list[str]:
    """google's ``test_instruction_following_loose`` variants, in its order.

    >>> loose_variants("Title\\n**body**\\nend")[2]
    '**body**\\nend'
    """
    lines = response.split("\n")
    first, last, both = "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()
    return [
        response,
        response.replace("*", ""),
        first,
        last,
        both,
        first.replace("*", ""),
        last.replace("*", ""),
        both.replace("*", ""),
    ]


def ifeval_check(response: str, prompt: str, instruction_ids: list[str], kwargs: list[dict]) -> list[dict]:
    """Per instruction: ``{"id", "strict", "loose"}`` (google's rules; an unknown id raises, naming it)."""
    registry = _registry()
    variants = loose_variants(response)
    out = []
    for index, iid in enumerate(instruction_ids):
        if iid not in registry:
            raise KeyError(f"IF-Eval instruction {iid!r} has no checker in if-verifiable")
        checker = registry[iid](iid)
        checker.build_description(**{k: v for k, v in (kwargs[index] or {}).items() if v is not None})
        args = checker.get_instruction_args()
        if args and "prompt" in args:
            checker.build_description(prompt=prompt)
        strict = bool(response.strip() and checker.check_following(response))
        loose = any(v.strip() and checker.check_following(v) for v in variants)
        out.append({"id": iid, "strict": strict, "loose": loose})
    return out


def grade_ifeval(rows: list[dict], items: dict[str, dict]) -> list[dict]:
    """Graded rows of IF-Eval outputs (one per prompt; every sample checked)."""
    from tqdm import tqdm

    graded = []
    for r in tqdm(rows, desc="grade ifeval", leave=False, mininterval=2):
        it = items[r["id"]]
        samples = []
        for o in r["outputs"]:
            checks = ifeval_check(o["text"], it["question"], it["instructions"], it["kwargs"])
            samples.append(
                {
                    "output": o["text"],
                    "tokens": o["tokens"],
                    "finish_reason": o["finish_reason"],
                    "instructions": checks,
                    "correct": {"strict": all(c["strict"] for c in checks), "loose": all(c["loose"] for c in checks)},
                }
            )
        graded.append(
            {
                "id": r["id"],
                "index": r["index"],
                "prompt": r["prompt"],
                "gold": "",
                "samples": samples,
                "correct": samples[0]["correct"]["strict"],
                "quirks": [],
            }
        )
    return graded


def aggregate_ifeval(label: str, graded: list[dict], *, n_boot: int = 10000, seed: int = 0) -> dict:
    """IF-Eval's four accuracies (percent); the table's value is instruction-level strict, its CI a bootstrap over
    prompts (the instructions of one prompt are not independent)."""
    import numpy as np

    checks = [g["samples"][0]["instructions"] for g in graded]
    per_prompt = np.array([[sum(c["strict"] for c in cs), sum(c["loose"] for c in cs), len(cs)] for cs in checks])
    n_inst = int(per_prompt[:, 2].sum()) if len(per_prompt) else 0
    strict = int(per_prompt[:, 0].sum()) if len(per_prompt) else 0
    loose = int(per_prompt[:, 1].sum()) if len(per_prompt) else 0
    rng = np.random.default_rng(seed)
    if len(per_prompt):
        idx = rng.integers(0, len(per_prompt), size=(n_boot, len(per_prompt)))
        boot = 100 * per_prompt[idx, 0].sum(axis=1) / np.maximum(1, per_prompt[idx, 2].sum(axis=1))
        lo, hi = (float(x) for x in np.percentile(boot, [2.5, 97.5]))
    else:
        lo = hi = float("nan")
    by_id: dict[str, list[int]] = {}
    for cs in checks:
        for c in cs:
            by_id.setdefault(c["id"], [0, 0])
            by_id[c["id"]][0] += c["strict"]
            by_id[c["id"]][1] += 1

    def pct(a: int, b: int) -> float:
        return round(100.0 * a / b, 4) if b else float("nan")

    return {
        "label": label,
        "mode": "strict",
        "correct": strict,
        "n": n_inst,
        "accuracy": pct(strict, n_inst),
        "ci_low": round(lo, 4),
        "ci_high": round(hi, 4),
        "ci_method": "bootstrap over prompts",
        "unit": "instructions",
        "modes": {"strict": pct(strict, n_inst), "loose": pct(loose, n_inst)},
        "ifeval": {
            "prompts": len(graded),
            "instructions": n_inst,
            "prompt_strict": pct(sum(g["samples"][0]["correct"]["strict"] for g in graded), len(graded)),
            "prompt_loose": pct(sum(g["samples"][0]["correct"]["loose"] for g in graded), len(graded)),
            "instruction_strict": pct(strict, n_inst),
            "instruction_loose": pct(loose, n_inst),
            "per_instruction_strict": {k: pct(a, b) for k, (a, b) in sorted(by_id.items())},
        },
        "truncated_outputs": sum(g["samples"][0]["finish_reason"] == "length" for g in graded),
        "disagreements": 0,
        "quirks": {},
        "samples_per_item": 1,
    }


# ---- MT-Bench: generation -----------------------------------------------------------------------------------------


def conversation(messages: list[dict], family: str) -> str:
    """A multi-turn conversation as a harness-format model reads it, the assistant's next turn opened.

    >>> conversation([{"role": "user", "content": "Hi"}], "deepseek")
    'User: Hi\\n\\nAssistant:'
    """
    if family == "deepseek":  # DeepSeek's own chat format (its tokenizer adds the BOS)
        out = ""
        for m in messages:
            if m["role"] == "user":
                out += f"User: {m['content']}\n\n"
            else:
                out += f"Assistant: {m['content']}<\uff5cend\u2581of\u2581sentence\uff5c>"
        return out + "Assistant:"
    from cft_lab.prompts import IM_END, IM_START

    turns = [{"role": "system", "content": DEFAULT_SYSTEM}, *messages]
    return "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in turns) + f"{IM_START}assistant\n"


def _prompt_for(generator, messages: list[dict], template: str, prompt_format: str):
    if getattr(generator, "takes_messages", False):
        return [dict(m) for m in messages]
    if prompt_format == "chat":
        return generator.chat_prompt([dict(m) for m in messages])
    return conversation(messages, "deepseek" if template == "deepseek-math" else "chatml")


#: FastChat's sampling temperature per MT-Bench category (fastchat/llm_judge/common.py ``temperature_config``; a
#: category it does not list is sampled at 0.7, as gen_model_answer.py does). ``eval.mt_bench_sampling=fastchat``.
FASTCHAT_TEMPERATURES = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
    "arena-hard-200": 0.0,
}
FASTCHAT_DEFAULT_TEMPERATURE = 0.7


def category_temperatures(cfg) -> Optional[dict[str, float]]:
    """The temperature per MT-Bench category under ``eval.mt_bench_sampling`` (None: the cell's own settings)."""
    from cft_lab.options import MtBenchSampling

    return dict(FASTCHAT_TEMPERATURES) if cfg.eval.mt_bench_sampling == MtBenchSampling.fastchat else None


def _generate_by_temperature(generator, items, prompts, stops, seed, temperatures, desc):
    """One batched call per temperature (one call in all without ``temperatures``); outputs in ``items``' order."""
    if temperatures is None:
        return generator.generate(prompts, stops, seeds=[seed + it["index"] for it in items], n=1, desc=desc)
    groups: dict[float, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(temperatures.get(it["category"], FASTCHAT_DEFAULT_TEMPERATURE), []).append(i)
    outs: list = [None] * len(items)
    for t, idx in sorted(groups.items()):
        got = generator.generate(
            [prompts[i] for i in idx], stops, seeds=[seed + items[i]["index"] for i in idx], n=1, temperature=t,
            desc=f"{desc} T={t}",
        )  # fmt: skip
        for i, o in zip(idx, got):
            outs[i] = o
    return outs


def generate_mt_bench(
    generator,
    out_dir: Path,
    *,
    template: str,
    prompt_format: str,
    limit: Optional[int],
    seed: int,
    desc: str = "",
    temperatures: Optional[dict[str, float]] = None,
) -> Path:
    """Both turns of every (or the first ``limit``) question into ``out_dir/mt_bench.jsonl``; turn 1 is kept in
    ``mt_bench.turn1.jsonl`` so an interrupted run resumes at turn 2. ``temperatures`` (category -> temperature,
    :data:`FASTCHAT_TEMPERATURES`) samples each question at its category's temperature, both turns, one batched call
    per temperature; without it every question uses the generator's own settings."""
    from cft_lab.eval import benchmarks
    from cft_lab.pipeline.store import read_jsonl, write_jsonl

    final = out_dir / "mt_bench.jsonl"
    if final.is_file():
        return final
    items = benchmarks.items("mt_bench", limit)
    stops = list(MT_BENCH_STOPS)
    first_path = out_dir / "mt_bench.turn1.jsonl"
    if first_path.is_file():
        first = {r["id"]: r for r in read_jsonl(first_path)}
    else:
        msgs = [[{"role": "user", "content": it["turns"][0]}] for it in items]
        prompts = [_prompt_for(generator, m, template, prompt_format) for m in msgs]
        outs = _generate_by_temperature(
            generator, items, prompts, stops, seed, temperatures, f"{desc or 'mt_bench'} turn 1"
        )
        first = {
            it["id"]: {"id": it["id"], "prompt": p, "output": _out(o[0])} for it, p, o in zip(items, prompts, outs)
        }
        write_jsonl(first_path, first.values())
    msgs2 = [
        [
            {"role": "user", "content": it["turns"][0]},
            {"role": "assistant", "content": first[it["id"]]["output"]["text"]},
            {"role": "user", "content": it["turns"][1]},
        ]
        for it in items
    ]
    prompts2 = [_prompt_for(generator, m, template, prompt_format) for m in msgs2]
    label = f"{desc or 'mt_bench'} turn 2"
    outs2 = _generate_by_temperature(generator, items, prompts2, stops, seed, temperatures, label)
    rows = [
        {
            "id": it["id"],
            "index": it["index"],
            "category": it["category"],
            "prompt": [first[it["id"]]["prompt"], p2],
            "turns": [first[it["id"]]["output"], _out(o[0])],
            **(
                {"temperature": temperatures.get(it["category"], FASTCHAT_DEFAULT_TEMPERATURE)}
                if temperatures is not None
                else {}
            ),
        }
        for it, p2, o in zip(items, prompts2, outs2)
    ]
    write_jsonl(final, rows)
    first_path.unlink()
    return final


def _out(c) -> dict:
    return {"text": c.text, "tokens": c.tokens, "finish_reason": c.finish_reason}


# ---- MT-Bench: judging --------------------------------------------------------------------------------------------


@cache
def judge_prompts() -> dict[str, dict]:
    from cft_lab.eval.benchmarks import files

    return {p["name"]: p for p in files.load("mt_bench_judge_prompts")}


@cache
def reference_answers() -> dict[int, list[str]]:
    from cft_lab.eval.benchmarks import files

    return {r["question_id"]: r["choices"][0]["turns"] for r in files.load("mt_bench_reference")}


def judge_messages(item: dict, answers: list[str], turn: int) -> tuple[str, list[dict]]:
    """(judge prompt name, messages) that ask for a rating of the answer to ``turn`` (1 or 2) of one question."""
    ref = item["category"] in NEED_REF_CATS
    name = ("single-math-v1" if ref else "single-v1") + ("-multi-turn" if turn == 2 else "")
    p = judge_prompts()[name]
    fields: dict[str, Any] = {}
    if turn == 1:
        fields.update(question=item["turns"][0], answer=answers[0])
    else:
        fields.update(
            question_1=item["turns"][0], question_2=item["turns"][1], answer_1=answers[0], answer_2=answers[1]
        )
    if ref:
        refs = reference_answers().get(item["question_id"])
        if refs is None:
            raise KeyError(f"MT-Bench question {item['question_id']} ({item['category']}) has no reference answer")
        fields.update(ref_answer_1=refs[0], ref_answer_2=refs[1]) if turn == 2 else fields.update(ref_answer_1=refs[0])
    return name, [
        {"role": "system", "content": p["system_prompt"]},
        {"role": "user", "content": p["prompt_template"].format(**fields)},
    ]


def parse_rating(judgment: str) -> Optional[float]:
    """FastChat's rating: ``[[x]]``, else ``[x]``; None when neither appears.

    >>> parse_rating("... Rating: [[7]]"), parse_rating("Rating: [6.5]"), parse_rating("no rating")
    (7.0, 6.5, None)
    """
    m = _RATING.search(judgment) or _RATING_BACKUP.search(judgment)
    return float(m.group(1)) if m else None


def make_judge(cfg, cache_dir: Path):
    """The judge of ``eval.judge`` (a ``conf/teacher`` option of kind openai) as an OpenAI-compatible client."""
    import copy

    from cft_lab.teachers import _openai

    judge = judge_config(cfg)
    as_teacher = copy.copy(cfg)
    as_teacher.teacher = judge  # the teacher machinery, with the judge's model, endpoint, prices and budget
    return judge, _openai(as_teacher, [], {}, cache_dir)


def judge_config(cfg):
    """The ``conf/teacher`` option ``eval.judge`` names (refused unless it is an OpenAI-compatible model)."""
    from cft_lab.config import ConfigError, TeacherConfig, load_option

    if not cfg.eval.judge:
        raise ConfigError("eval.benchmarks includes mt_bench but eval.judge names no judge (eval.judge=gpt4_judge)")
    judge = load_option("teacher", cfg.eval.judge, TeacherConfig)
    if judge.kind != "openai" or not judge.model:
        raise ConfigError(f"eval.judge={cfg.eval.judge}: a judge is an OpenAI-compatible model (kind openai, a model)")
    return judge


def judge_estimate(cfg, cache_dir: Path):
    """What MT-Bench's judge would be asked for one cell, before its answers exist: two judgments per question (the
    first ``eval.limit``), each prompt sized with answers of ``inference.max_new_tokens`` tokens (a bound: the
    answers are not written yet, so the request cache cannot be consulted), completions at the judge's
    ``expected_completion_tokens`` (at most its ``max_tokens``), priced and capped by the judge's option. Refused
    (ValueError) when the expected cost exceeds the judge's budget."""
    import copy

    from cft_lab.eval import benchmarks
    from cft_lab.teachers.estimate import budget_of, check_estimate, estimate_tokens
    from cft_lab.teachers.pricing import configured

    judge = judge_config(cfg)
    answer = " ".join(["word"] * cfg.inference.max_new_tokens)  # max_new_tokens tokens by estimate_tokens' count
    prompt_tokens = requests = 0
    for it in benchmarks.items("mt_bench", cfg.eval.limit):
        for turn in (1, 2):
            _, msgs = judge_messages(it, [answer, answer], turn)
            prompt_tokens += sum(estimate_tokens(m["content"]) + 4 for m in msgs)
            requests += 1
    option = f"eval.judge={judge.name}"
    price = configured(judge.model, judge.price_input, judge.price_output, option=option).get(judge.model)
    expected = requests * min(judge.expected_completion_tokens, judge.max_tokens)
    cost = None if price is None else price.cost(prompt_tokens, expected)
    cost_max = None if price is None else price.cost(prompt_tokens, requests * judge.max_tokens)
    as_teacher = copy.copy(cfg)
    as_teacher.teacher = judge  # the judge runs as a teacher: its budget is a teacher's
    est = Estimate(
        requests, 0, prompt_tokens, expected, cost, cost_max, budget_of(as_teacher),
        note=f"answers sized at {cfg.inference.max_new_tokens} tokens (a bound; not written yet)",
        what=f"judge requests ({judge.model})",
    )  # fmt: skip
    try:
        check_estimate(as_teacher, est)
    except ValueError as e:
        raise ValueError(f"eval.judge={judge.name} (budget_usd in conf/teacher/{judge.name}.yaml): {e}") from None
    return est


def judge_mt_bench(rows: list[dict], items: dict[str, dict], judge_cfg, client) -> list[dict]:
    """Graded rows: each turn's judge prompt, judgment and rating (None: unparsed)."""
    from cft_lab.teachers.base import TeacherTask

    tasks, where = [], []
    for r in rows:
        it = items[r["id"]]
        answers = [t["text"] for t in r["turns"]]
        for turn in (1, 2):
            name, msgs = judge_messages(it, answers, turn)
            tasks.append(TeacherTask(f"{r['id']}:turn{turn}", "judge", "", None, messages=tuple(msgs)))
            where.append((r["id"], turn, name))
    results = client.run(tasks)
    failed = [res for res in results if res.status != "ok"]
    if failed:
        raise RuntimeError(
            f"MT-Bench judge {judge_cfg.name}: {len(failed)} of {len(results)} judgments failed (first: "
            f"{failed[0].error}); the others are cached: rerun to ask only these"
        )
    by_row: dict[str, list[dict]] = {}
    for (rid, turn, name), res in zip(where, results):
        by_row.setdefault(rid, []).append(
            {"turn": turn, "prompt": name, "judgment": res.text, "rating": parse_rating(res.text or "")}
        )
    return [
        {
            "id": r["id"],
            "index": r["index"],
            "category": r["category"],
            "prompt": r["prompt"],
            "gold": "",
            "turns": r["turns"],
            "judgments": by_row[r["id"]],
            "samples": [
                {
                    "output": r["turns"][0]["text"],
                    "tokens": r["turns"][0]["tokens"],
                    "finish_reason": r["turns"][0]["finish_reason"],
                    "correct": {},
                }
            ],
            "correct": None,  # judged on a scale, not right or wrong
            "quirks": [],
        }
        for r in rows
    ]


def aggregate_mt_bench(label: str, graded: list[dict], judge: dict, *, n_boot: int = 10000, seed: int = 0) -> dict:
    """The mean rating (1-10) over both turns, per turn and per category, with a bootstrap CI over questions."""
    import numpy as np

    per_q = [[j["rating"] for j in g["judgments"] if j["rating"] is not None] for g in graded]
    ratings = [x for q in per_q for x in q]
    unparsed = sum(j["rating"] is None for g in graded for j in g["judgments"])
    mean = float(np.mean(ratings)) if ratings else float("nan")
    rng = np.random.default_rng(seed)
    kept = [q for q in per_q if q]
    if kept:
        sums, counts = np.array([sum(q) for q in kept]), np.array([len(q) for q in kept])
        idx = rng.integers(0, len(kept), size=(n_boot, len(kept)))
        boot = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
        lo, hi = (float(x) for x in np.percentile(boot, [2.5, 97.5]))
    else:
        lo = hi = float("nan")

    def turn_mean(turn: int) -> float:
        xs = [j["rating"] for g in graded for j in g["judgments"] if j["turn"] == turn and j["rating"] is not None]
        return round(float(np.mean(xs)), 4) if xs else float("nan")

    cats: dict[str, list[float]] = {}
    for g in graded:
        cats.setdefault(g["category"], []).extend(j["rating"] for j in g["judgments"] if j["rating"] is not None)
    return {
        "label": label,
        "mode": "judge",
        "value": round(mean, 4),
        "accuracy": round(mean, 4),
        "scale": "1-10",
        "correct": len(ratings),
        "n": len(ratings),
        "ci_low": round(lo, 4),
        "ci_high": round(hi, 4),
        "ci_method": "bootstrap over questions",
        "modes": {"judge": round(mean, 4)},
        "mt_bench": {
            "questions": len(graded),
            "judged": len(ratings),
            "unparsed": unparsed,
            "turn1": turn_mean(1),
            "turn2": turn_mean(2),
            "categories": {k: round(float(np.mean(v)), 4) for k, v in sorted(cats.items()) if v},
            "judge": judge,
        },
        "truncated_outputs": sum(t["finish_reason"] == "length" for g in graded for t in g["turns"]),
        "disagreements": 0,
        "quirks": {},
        "samples_per_item": 1,
    }


def judge_identity(judge_cfg) -> dict:
    """What decides the ratings (the grade key's part when a cell is judged): model, prompts, sampling."""
    return {
        "model": judge_cfg.model,
        "prompt_version": JUDGE_PROMPT_VERSION,
        "sampling": {
            "temperature": judge_cfg.temperature,
            "top_p": judge_cfg.top_p,
            "max_tokens": judge_cfg.max_tokens,
        },
    }


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True)
