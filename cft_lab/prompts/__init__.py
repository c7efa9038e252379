"""Versioned prompt templates, pinned as text (never taken from a tokenizer's own chat template).

Training (``chatml_v1``) renders LLaMA-Factory 0.9.2's ``qwen`` template, which the paper trained with (docs/protocol.md
§3.2): the default system text "You are a helpful assistant.", the user turn, and the assistant header; the completion
is the target followed by ``<|im_end|>\\n`` and is the only part in the loss. Later LLaMA-Factory versions changed the
default system text, and a template change alone moved one model from 57% to 26% (docs/pitfalls.md#training), so
templates are pinned here and their rendered strings are tested byte for byte. A template is never edited in place: add
``_v2``.

Evaluation templates reproduce the paper harness (docs/protocol.md §9): ``qwen25-math-cot`` and ``deepseek-math``.

>>> render_prompt("chatml_v1", "hi", system="S")
'<|im_start|>system\\nS<|im_end|>\\n<|im_start|>user\\nhi<|im_end|>\\n<|im_start|>assistant\\n'
>>> render_eval_prompt("deepseek-math", "1+1?")
'User: 1+1?\\nPlease reason step by step, and put your final answer within \\\\boxed{}.\\n\\nAssistant:'
"""

from __future__ import annotations

IM_START, IM_END, ENDOFTEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"


def chatml(system: str, user: str) -> str:
    """Qwen's ChatML prompt: a system turn, a user turn, and the assistant header the model completes.

    >>> chatml("S", "hi")
    '<|im_start|>system\\nS<|im_end|>\\n<|im_start|>user\\nhi<|im_end|>\\n<|im_start|>assistant\\n'
    """
    return f"{IM_START}system\n{system}{IM_END}\n{IM_START}user\n{user}{IM_END}\n{IM_START}assistant\n"


TRAIN_TEMPLATES = {"chatml_v1": {"prompt": chatml("{system}", "{user}"), "completion_suffix": IM_END + "\n"}}

_BOXED_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
EVAL_TEMPLATES = {
    "qwen25-math-cot": chatml(_BOXED_SYSTEM, "{question}"),
    "deepseek-math": "User: {question}\n" + _BOXED_SYSTEM + "\n\nAssistant:",
}

#: Stop strings of the paper's math harness; the last four were added by the CFT authors (docs/protocol.md §4.2).
MATH_STOP_STRINGS = ["</s>", IM_END, ENDOFTEXT, "(END)", "\\[END\\]", "**END**", "[END]"]

#: GPQA, ``run_open.py --form qwen`` (docs/protocol.md §4.3): ChatML with the default system text, 0-shot, no format
#: instruction. The user turn is built by ``cft_lab.eval.benchmarks`` as ``{Question}\nAnswer Choices: (A) .. (B) ..``.
GPQA_TEMPLATES = {"gpqa-qwen": chatml("You are a helpful assistant.", "{question}")}
GPQA_STOP_STRINGS = [
    "USER:",
    "ASSISTANT:",
    "### Instruction:",
    "Response:",
    "\n\nProblem",
    "\nProblem",
    "Problem:",
    "<|eot_id|>",
    "####",
]

#: MMLU-Pro 0-shot CoT (docs/protocol.md §4.4): the system text of MMLU-Pro's CoT prompt with the category filled in,
#: then the question, the lettered options and "Answer: Let's think step by step." in the user turn. The paper's copy of
#: the system text (``cot_prompt_lib/initial_prompt_1.txt``) is not public; this is MMLU-Pro's published 0-shot
#: wording, which docs/protocol.md §4.4 paraphrases ("reason step by step and finish with 'the answer is (X)'").
MMLU_PRO_SYSTEM = (
    "The following are multiple choice questions (with answers) about {category}. Think step by step "
    'and then finish your answer with "the answer is (X)" where X is the correct letter choice.'
)
MMLU_PRO_TEMPLATES = {"mmlu-pro-cot-0shot": chatml(MMLU_PRO_SYSTEM, "{question}\n")}
MMLU_PRO_STOP_STRINGS = ["</s>", IM_END, ENDOFTEXT, "Question:"]

#: The fixed critique instruction of WebInstruct-CFT (docs/protocol.md §1.2).
CFT_INSTRUCTION = "Please critique whether the following solution to the question is correct."


#: IF-Eval and MT-Bench (docs/protocol.md §4.6): the prompt as written, no chat template (the authors' IF-Eval script).
INSTRUCT_TEMPLATES = {"raw": "{question}"}


def template_text(template: str) -> str:
    """The pinned text of any evaluation template (math, GPQA, MMLU-Pro, or the raw instruction prompt)."""
    for table in (EVAL_TEMPLATES, GPQA_TEMPLATES, MMLU_PRO_TEMPLATES, INSTRUCT_TEMPLATES):
        if template in table:
            return table[template]
    known = sorted([*EVAL_TEMPLATES, *GPQA_TEMPLATES, *MMLU_PRO_TEMPLATES, *INSTRUCT_TEMPLATES])
    raise KeyError(f"unknown eval template {template!r}; known: {known}")


#: Every evaluation template as chat messages: (system text or None, user turn with ``{question}``). The pinned
#: text of a ChatML template is ``chatml(system, user)`` of these (tests/test_checkpoints.py checks each);
#: ``deepseek-math`` is the harness's plain "User: ... Assistant:" form, whose instruction follows the question in the
#: user turn. A model with ``prompt_format=chat`` (its own chat template) or an API model is sent these messages
#: instead of the pinned text (docs/protocol.md §4.2: the paper's harness built ChatML by hand for every model).
EVAL_MESSAGES: dict[str, tuple[str | None, str]] = {
    "qwen25-math-cot": (_BOXED_SYSTEM, "{question}"),
    "deepseek-math": (None, "{question}\n" + _BOXED_SYSTEM),
    "gpqa-qwen": ("You are a helpful assistant.", "{question}"),
    "mmlu-pro-cot-0shot": (MMLU_PRO_SYSTEM, "{question}\n"),
    "raw": (None, "{question}"),
}


def eval_messages(template: str, question: str, category: str | None = None) -> list[dict]:
    """The chat messages of one evaluation prompt under ``template`` (see :data:`EVAL_MESSAGES`).

    >>> eval_messages("deepseek-math", "1+1?")
    [{'role': 'user', 'content': '1+1?\\nPlease reason step by step, and put your final answer within \\\\boxed{}.'}]
    """
    try:
        system, user = EVAL_MESSAGES[template]
    except KeyError:
        raise KeyError(f"unknown eval template {template!r}; known: {sorted(EVAL_MESSAGES)}") from None
    if system is not None and "{category}" in system:
        if category is None:
            raise ValueError(f"template {template} needs the item's category")
        system = system.replace("{category}", category)
    out = [] if system is None else [{"role": "system", "content": system}]
    return out + [{"role": "user", "content": user.replace("{question}", question)}]


def template_hash(template: str) -> str:
    """A short content hash of a template's text, stored next to every score (a renamed template is caught too).

    >>> len(template_hash("qwen25-math-cot"))
    12
    """
    import hashlib

    return hashlib.sha256(f"{template}\0{template_text(template)}".encode()).hexdigest()[:12]


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
    ``input`` is ``Question:\\n{q}\\n\\nSolution:\\n{y}`` (docs/protocol.md §1.2, §3.2).

    >>> cft_user_turn("Q?", "A.", "Do it.")
    'Do it.\\nQuestion:\\nQ?\\n\\nSolution:\\nA.'
    """
    return f"{instruction}\nQuestion:\n{question}\n\nSolution:\n{response}"
