"""Responses written by a model (``response_source=self_generated``, Table 6; docs/protocol.md §1.5).

``self_generate(cfg, records, problems_by_id)`` samples ``response_source.n`` responses per question from
``response_source.model`` (default: the cell's base model) through the generation backend, with the harness prompt
and a per-question seed, and grades each against the gold where one is known (the testbed's integer answers, or the
paper grader on real data). With ``n > 1`` each sample becomes its own record, id ``<question id>#<j>``.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Optional

from cft_lab.config import Config
from cft_lab.data.records import Record

log = logging.getLogger(__name__)


def self_generate(cfg: Config, records: list[Record], problems_by_id: dict) -> list[Record]:
    """One sampled response per question from ``response_source.model`` (default: the cell's base model)."""
    from cft_lab.eval import grading
    from cft_lab.eval.generation import make_generator
    from cft_lab.prompts import MATH_STOP_STRINGS, render_eval_prompt
    from cft_lab.testbed import answers as tb_answers
    from cft_lab.train.modeling import model_path

    rs = cfg.response_source
    model_dir = rs.model or model_path(cfg.model)
    inference = replace(
        cfg.inference,
        temperature=rs.temperature,
        top_p=rs.top_p,
        n=1,
        max_new_tokens=rs.max_new_tokens or cfg.inference.max_new_tokens,
    )
    template = rs.template or cfg.model.eval_template
    prompts = [render_eval_prompt(template, r.question) for r in records]
    revision = cfg.model.hub_revision() if rs.model is None else None
    generator = make_generator(model_dir, cfg.model, inference, revision)
    try:  # sample j of question i uses seed + i*n + j: a question's responses do not depend on its batch
        outs = generator.generate(
            prompts,
            MATH_STOP_STRINGS,
            seeds=[rs.seed + i * rs.n for i in range(len(records))],
            n=rs.n,
            desc="self-generated responses",
        )
    finally:
        generator.close()
    label = f"self_generated:{rs.model or cfg.model.name}"
    out, truncated = [], 0
    for r, samples in zip(records, outs):
        for j, o in enumerate(samples):
            text = o.text
            truncated += o.finish_reason == "length"
            if r.id in problems_by_id:  # testbed: the answer is an integer
                correct: Optional[bool] = tb_answers.grade(text, problems_by_id[r.id].answer)
            elif r.gold:
                correct = grading.grade(text, r.gold, "math", mode="paper")
            else:
                correct = None
            meta = {
                **r.meta,
                "response_tokens": o.tokens,
                "response_finish_reason": o.finish_reason,
                "reference_response": r.response,
                "question_id": r.id,
                "sample": j,
            }
            out.append(
                replace(
                    r,
                    id=r.id if rs.n == 1 else f"{r.id}#{j}",
                    response=text,
                    response_source=label,
                    response_correct=correct,
                    meta=meta,
                )
            )
    if rs.n > 1:  # the testbed teacher finds each sample's problem under its new id
        problems_by_id.update(
            {r.id: problems_by_id[r.meta["question_id"]] for r in out if r.meta["question_id"] in problems_by_id}
        )
    log.info(
        "self-generated %d responses (%d cut at the token limit); %d of %d graded right",
        len(out),
        truncated,
        sum(r.response_correct is True for r in out),
        sum(r.response_correct is not None for r in out),
    )
    return out
