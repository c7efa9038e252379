"""Prompts of the self-critique inference modes (Table 8; docs/protocol.md §4.7 and §10), versioned and pinned as text.

The paper prints its templates as plain text with placeholders (v3 Appendix A.1; docs/protocol.md §10) and does not
say whether they were wrapped in a chat template, nor exactly where the prompt ends and the expected output begins;
the released code has no self-critique prompt at all (docs/protocol.md §10.5). Each template below says where its
text comes from and what is unknown; a rendered Table 8 repeats that in its footnote (:data:`NOTES`).

Direct inference and the *solve* step of the two-stage and self-verify modes use the benchmark's own prompt (the
harness's ``qwen25-math-cot`` for math, which produced the paper's main results); ``direct_plain_v1`` is the
appendix's plain layout, for users who want to test that reading.

Templates (``{question}`` and ``{solution}`` are filled in; ``render(name, question, solution)``):

``single_pass_chatml_v1``  the appendix's single-pass instruction (v3 A.1.2, verbatim words, its line breaks
                           joined with spaces) as the system turn of the harness's ChatML layout, the question as
                           the user turn: the same shape as ``qwen25-math-cot`` with the instruction swapped.
``single_pass_plain_v1``   the appendix's single-pass template as plain text, ending at "Answer: Let's solve this
                           first:" (where the expected output begins, [inferred]).
``critique_train_v1``      the CFT training layout (docs/protocol.md §3.2): LLaMA-Factory's ``qwen`` ChatML with
                           the default system text, the user turn
                           ``{instruction}\\nQuestion:\\n{q}\\n\\nSolution:\\n{y}``: the prompt a CFT model was
                           trained to critique (the parity choice of docs/protocol.md §10.3.2).
``critique_paper_v1``      the appendix's Stage-2 text (v3 A.1.3) as the user turn of the same ChatML: the
                           instruction, "Question: {q}", "Solution: {y}", "Critique:" on their own lines.
``direct_plain_v1``        the appendix's direct/Stage-1 template as plain text, ending at "Answer: Let's solve this
                           step by step:", with one backslash in ``\\boxed{}`` (the paper prints two, most likely a
                           Python-escaped string pasted into the appendix; docs/protocol.md §10.1).

>>> render("critique_train_v1", "1+1?", "2").endswith("Solution:\\n2<|im_end|>\\n<|im_start|>assistant\\n")
True
>>> render("single_pass_plain_v1", "1+1?").splitlines()[-1]
"Answer: Let's solve this first:"
"""

from __future__ import annotations

import hashlib

from cft_lab.prompts import CFT_INSTRUCTION, ENDOFTEXT, IM_END, cft_user_turn, chatml, render_prompt

#: v3 Appendix A.1.2, verbatim words (the PDF's line breaks are joined by spaces: [unknown] whether the authors'
#: string had them).
SINGLE_PASS_INSTRUCTION = (
    "Please reason step by step to solve this problem and then critique your solution. If any errors are found, "
    "provide a corrected solution. Please put your final answer within \\boxed{}."
)
DIRECT_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
DEFAULT_SYSTEM = "You are a helpful assistant."

TEMPLATES: dict[str, str] = {
    "single_pass_chatml_v1": chatml(SINGLE_PASS_INSTRUCTION, "{question}"),
    "single_pass_plain_v1": SINGLE_PASS_INSTRUCTION + "\nQuestion: {question}\nAnswer: Let's solve this first:",
    "critique_paper_v1": chatml(
        DEFAULT_SYSTEM, CFT_INSTRUCTION + "\nQuestion: {question}\nSolution: {solution}\nCritique:"
    ),
    "direct_plain_v1": DIRECT_INSTRUCTION + "\nQuestion: {question}\nAnswer: Let's solve this step by step:",
}
#: Rendered by the training template instead of a fixed string (see :func:`render`).
TRAIN_LAYOUT = {"critique_train_v1"}
SINGLE_PASS = ("single_pass_chatml_v1", "single_pass_plain_v1")
CRITIQUE = ("critique_train_v1", "critique_paper_v1")

#: Stops of a critique or single-pass generation: the model's end-of-turn only. The harness's ``[END]`` variants would
#: cut a critique before its verdict is complete and a single-pass output before its corrected solution.
OPEN_STOPS = ["</s>", IM_END, ENDOFTEXT]

#: Where the paper leaves these modes unspecified; rendered as Table 8's footnote.
NOTES = (
    "Self-critique prompts: the paper prints its templates as plain text and does not say whether they were wrapped "
    "in a chat template, which temperature the critique step used, its token limit, or how a verdict was parsed "
    "(docs/protocol.md §10). Here: the single-pass instruction in the harness's ChatML (single_pass_chatml_v1); the "
    "critique step in the CFT training layout (critique_train_v1) at the solve step's temperature; verdicts read by "
    "cft_lab.data.verdicts (right/correct, wrong/incorrect), an unreadable one counted as wrong (the paper's loop "
    "exits only on 'Correct'); the single-pass answer is the last \\boxed{} of the output."
)


def render(name: str, question: str, solution: str | None = None) -> str:
    """The exact prompt of template ``name`` for one question (and, for critiques, one solution)."""
    if name in TRAIN_LAYOUT:
        if solution is None:
            raise ValueError(f"template {name} critiques a solution: pass solution=")
        return render_prompt("chatml_v1", cft_user_turn(question, solution, CFT_INSTRUCTION), DEFAULT_SYSTEM)
    try:
        text = TEMPLATES[name]
    except KeyError:
        raise KeyError(
            f"unknown self-critique template {name!r}; known: {sorted([*TEMPLATES, *TRAIN_LAYOUT])}"
        ) from None
    if "{solution}" in text:
        if solution is None:
            raise ValueError(f"template {name} critiques a solution: pass solution=")
        text = text.replace("{solution}", solution)
    return text.replace("{question}", question.strip())


def template_hash(name: str) -> str:
    """A short hash of a template's text (the training layout is hashed through a rendering of fixed strings)."""
    probe = render(name, "{question}", "{solution}") if name in TRAIN_LAYOUT or name in TEMPLATES else name
    return hashlib.sha256(f"{name}\0{probe}".encode()).hexdigest()[:12]
