"""Versioned prompt templates, pinned as text (never taken from a tokenizer's own chat template).

Training (``chatml_v1``) renders LLaMA-Factory 0.9.2's ``qwen`` template, which the paper trained with (PROTOCOL §3.2):
the default system text "You are a helpful assistant.", the user turn, and the assistant header; the completion is
the target followed by ``<|im_end|>\\n`` and is the only part in the loss. Later LLaMA-Factory versions changed the
default system text, and a template change alone moved one model from 57% to 26% (PITFALLS), so templates are
pinned here and their rendered strings are tested byte for byte. A template is never edited in place: add ``_v2``.

Evaluation templates reproduce the paper harness (PROTOCOL §9): ``qwen25-math-cot`` and ``deepseek-math``.

>>> render_prompt("chatml_v1", "hi", system="S")
'<|im_start|>system\\nS<|im_end|>\\n<|im_start|>user\\nhi<|im_end|>\\n<|im_start|>assistant\\n'
>>> render_eval_prompt("deepseek-math", "1+1?")
'User: 1+1?\\nPlease reason step by step, and put your final answer within \\\\boxed{}.\\n\\nAssistant:'
"""

from __future__ import annotations

IM_START, IM_END, ENDOFTEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"

TRAIN_TEMPLATES = {
    "chatml_v1": {
        "prompt": IM_START + "system\n{system}" + IM_END + "\n" + IM_START + "user\n{user}" + IM_END + "\n"
        + IM_START + "assistant\n",
        "completion_suffix": IM_END + "\n",
    },
}

_BOXED_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
EVAL_TEMPLATES = {
    "qwen25-math-cot": IM_START + "system\n" + _BOXED_SYSTEM + IM_END + "\n" + IM_START + "user\n{question}" + IM_END
    + "\n" + IM_START + "assistant\n",
    "deepseek-math": "User: {question}\n" + _BOXED_SYSTEM + "\n\nAssistant:",
}

#: Stop strings of the paper's math harness; the last four were added by the CFT authors (PROTOCOL §4.2).
MATH_STOP_STRINGS = ["</s>", IM_END, ENDOFTEXT, "(END)", "\\[END\\]", "**END**", "[END]"]

#: The fixed critique instruction of WebInstruct-CFT (PROTOCOL §1.2).
CFT_INSTRUCTION = "Please critique whether the following solution to the question is correct."


def render_prompt(template: str, user: str, system: str) -> str:
    """The training prompt: everything before the completion."""
    try:
        t = TRAIN_TEMPLATES[template]
    except KeyError:
        raise KeyError(f"unknown training template {template!r}; known: {sorted(TRAIN_TEMPLATES)}") from None
    return t["prompt"].format(system=system, user=user)


def completion_suffix(template: str) -> str:
    return TRAIN_TEMPLATES[template]["completion_suffix"]


def render_eval_prompt(template: str, question: str) -> str:
    try:
        t = EVAL_TEMPLATES[template]
    except KeyError:
        raise KeyError(f"unknown eval template {template!r}; known: {sorted(EVAL_TEMPLATES)}") from None
    return t.replace("{question}", question.strip())


def cft_user_turn(question: str, response: str, instruction: str = CFT_INSTRUCTION) -> str:
    """The CFT user turn: LLaMA-Factory's Alpaca converter joins ``instruction + "\\n" + input``, and the released
    ``input`` is ``Question:\\n{q}\\n\\nSolution:\\n{y}`` (PROTOCOL §1.2, §3.2).

    >>> cft_user_turn("Q?", "A.", "Do it.")
    'Do it.\\nQuestion:\\nQ?\\n\\nSolution:\\nA.'
    """
    return f"{instruction}\nQuestion:\n{question}\n\nSolution:\n{response}"
