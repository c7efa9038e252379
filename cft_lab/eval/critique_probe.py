"""Critique ability: does the trained model tell a right response from a wrong one?

The model is given (question, response) pairs in the CFT training format (the critique instruction, the question
and the response, in the objective's chat template) and writes a critique; its ``Conclusion:`` verdict is parsed and
scored against whether the response was actually right: precision, recall and F1 of "wrong", accuracy over parsed
verdicts, and how many critiques carried no parseable verdict (``cft_lab.eval.metrics.critique_scores``). This measures
what CFT trains directly, next to the benchmarks that measure what the paper reports.

Pairs come from a testbed benchmark (``eval.critique.benchmark``, default ``testbed_val``) with responses from the
testbed's noisy solver under a seed different from the training data's, so the probe's responses are new.

Files: ``infer/<key>/critique.jsonl`` ({id, prompt, response, response_correct, output, tokens, finish_reason}) and
``grade/<key>/critique.json`` (the scores).
"""

from __future__ import annotations

from pathlib import Path

from cft_lab.config import Config
from cft_lab.data.verdicts import parse_verdict
from cft_lab.eval import benchmarks
from cft_lab.pipeline.store import read_jsonl, write_jsonl
from cft_lab.prompts import CFT_INSTRUCTION, ENDOFTEXT, IM_END, cft_user_turn, render_prompt

# Stops without the [END] variants: the verdict sits just before [END] and must stay in the output.
CRITIQUE_STOPS = ["</s>", IM_END, ENDOFTEXT]


def pairs(cfg: Config) -> list[dict]:
    from cft_lab.testbed import noisy

    c = cfg.eval.critique
    out = []
    for p in benchmarks.problems_for(c.benchmark, c.limit):
        resp = noisy.noisy_solve(p, seed=c.seed, error_rate=c.error_rate)
        out.append({"id": p.id, "question": p.question, "response": resp.text, "response_correct": resp.correct})
    return out


def generate(cfg: Config, generator, out_dir: Path) -> Path:
    obj = cfg.objective
    rows = pairs(cfg)
    prompts = [
        render_prompt(
            obj.template,
            cft_user_turn(r["question"], r["response"], obj.instruction or CFT_INSTRUCTION),
            obj.system_prompt,
        )
        for r in rows
    ]
    outs = generator.generate(
        prompts,
        CRITIQUE_STOPS,
        seeds=[cfg.eval.critique.seed + i for i in range(len(rows))],
        n=1,
        desc="critique probe",
        max_new_tokens=cfg.eval.critique.max_new_tokens,
    )
    for r, p, o in zip(rows, prompts, outs):
        r.update(prompt=p, output=o[0].text, tokens=o[0].tokens, finish_reason=o[0].finish_reason)
    target = out_dir / "critique.jsonl"
    write_jsonl(target, rows)
    return target


def score(infer_dir: Path) -> dict:
    from cft_lab.eval.metrics import critique_scores

    rows = list(read_jsonl(infer_dir / "critique.jsonl"))
    parsed = [parse_verdict(r["output"]) for r in rows]
    pred_wrong = [None if v.verdict is None else v.verdict == "wrong" for v in parsed]
    forms: dict[str, int] = {}
    for v in parsed:
        forms[v.form] = forms.get(v.form, 0) + 1
    return {
        "pairs": len(rows),
        "responses_wrong": sum(not r["response_correct"] for r in rows),
        **critique_scores(pred_wrong, [not r["response_correct"] for r in rows]),
        "verdict_forms": forms,
    }
