"""Teacher prompts, versioned and pinned as text (docs/protocol.md §1.2 and §2).

``render_messages(kind, question, response, version)`` returns the chat messages sent to a teacher:

* ``critique`` (the CFT critique, docs/protocol.md §1.2): the paper's teacher prompt. v1 is copied verbatim from the
  authors' released script ``tools/self_construct_critique_data/generate_critique_by_api.py``
  (``example_prompt_func``; read in a public copy of TIGER-AI-Lab/CritiqueFineTuning, liuzihe02/RDPO at commit
  2c9a56cc). That includes its typo "solve the a question" and the user message's leading and trailing newline.
  The v4 appendix prints a cleaned text ("solve a question ... whether his answer is correct"); the script's
  text is the one that produced the released data, so it is v1.
* ``answer`` (the teacher's own solution for WebInstruct-GPT4o-SFT, docs/protocol.md §2, v4 App. A.2): copied verbatim
  from the authors' GPT-4o answer script found in a public repository (system text "You are a science expert.
  You need to answer a given question clearly and conclude your answer with 'Answer: [YOUR ANSWER]' in the
  end."; user ``"\\nQuestion: {question}\\n"``). Known quirk, not reproduced: that script passed the raw
  ``input`` head ``"Question:\\n{q}\\n\\n"`` as the question, so its user text read
  ``"\\nQuestion: Question:\\n{q}\\n\\n\\n"``; v1 sends the clean question. It also called the ``gpt-4o`` alias.

The scripts send each message's content as one ``{"type": "text"}`` part; a single text part and a plain string
are the same input to the model, so v1 sends plain strings (which every OpenAI-compatible server accepts).

Sampling (both kinds, from the same scripts): temperature 0.3, top_p 0.95, max_tokens 3200, one sample.

A version is never edited in place: a changed text is a new version (``v2``), and :data:`TEMPLATE_HASHES` records
a hash of each version's texts so a stored critique names exactly what asked for it.

>>> msgs = render_messages("critique", "1+1?", "2")
>>> [m["role"] for m in msgs], msgs[1]["content"]
(['system', 'user'], '\\nQuestion: 1+1?\\n\\nSolution: 2\\n')
>>> render_messages("answer", "1+1?", None)[1]["content"]
'\\nQuestion: 1+1?\\n'
>>> len(template_hash("critique", "v1"))
16
"""

from __future__ import annotations

import hashlib
import json

KINDS = ("critique", "answer")

_CRITIQUE_SYSTEM_V1 = (
    "You are a science expert. A student is trying to solve the a question, please explain briefly whether his "
    "solution is correct or not. Finally, conclude your judgement with 'Conclusion: right/wrong [END]'."
)
_ANSWER_SYSTEM_V1 = (
    "You are a science expert. You need to answer a given question clearly and conclude your answer with "
    "'Answer: [YOUR ANSWER]' in the end."
)

#: (kind, version) -> {"system": text, "user": format string with {question} and, for critiques, {response}}.
TEMPLATES: dict[tuple[str, str], dict[str, str]] = {
    ("critique", "v1"): {"system": _CRITIQUE_SYSTEM_V1, "user": "\nQuestion: {question}\n\nSolution: {response}\n"},
    ("answer", "v1"): {"system": _ANSWER_SYSTEM_V1, "user": "\nQuestion: {question}\n"},
}

#: The paper scripts' sampling (docs/protocol.md §1.2): the same for critiques and answers.
SAMPLING: dict[str, dict] = {"v1": {"temperature": 0.3, "top_p": 0.95, "max_tokens": 3200, "n": 1}}


def template_hash(kind: str, version: str = "v1") -> str:
    """First 16 hex digits of sha256 over the version's pinned texts (recorded next to every response)."""
    tpl = _template(kind, version)
    return hashlib.sha256(json.dumps(tpl, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def _template(kind: str, version: str) -> dict[str, str]:
    if kind not in KINDS:
        raise ValueError(f"unknown teacher task kind {kind!r}; expected one of {KINDS}")
    try:
        return TEMPLATES[(kind, version)]
    except KeyError:
        known = sorted(v for k, v in TEMPLATES if k == kind)
        raise ValueError(f"no teacher prompt version {version!r} for kind {kind!r}; known: {known}") from None


def default_sampling(version: str = "v1") -> dict:
    """A copy of the sampling parameters pinned with ``version``.

    >>> default_sampling()
    {'temperature': 0.3, 'top_p': 0.95, 'max_tokens': 3200, 'n': 1}
    """
    if version not in SAMPLING:
        raise ValueError(f"no sampling pinned for prompt version {version!r}; known: {sorted(SAMPLING)}")
    return dict(SAMPLING[version])


def render_messages(kind: str, question: str, response: str | None, version: str = "v1") -> list[dict]:
    """The chat messages (system, user) that ask a teacher for ``kind`` on one item."""
    tpl = _template(kind, version)
    if kind == "critique":
        if response is None:
            raise ValueError("a critique task needs the response to critique, got None")
        user = tpl["user"].format(question=question, response=response)
    else:
        user = tpl["user"].format(question=question)
    return [{"role": "system", "content": tpl["system"]}, {"role": "user", "content": user}]


#: "kind/version" -> template hash, for run cards.
TEMPLATE_HASHES: dict[str, str] = {f"{k}/{v}": template_hash(k, v) for k, v in TEMPLATES}
