"""Objectives, the axis the paper ablates: one registry, :data:`OBJECTIVES`, and how one record set becomes the
{prompt, completion} pairs of each arm.

Every arm reads the same records (``cft_lab.data``: id, question, response, critique, verdict, teacher_solution)
with the same ids; an objective only decides what it needs from the teacher and the pair it makes of a record
(docs/protocol.md §1.2, §2):

==============  ==================  =====================================  ==========================================
objective       teacher writes      prompt (user turn)                      completion (loss)
==============  ==================  =====================================  ==========================================
base            nothing             (no training)
sft             nothing             question                                noisy response
sft_verified    critique (verdict)  question (records judged right only)    noisy response
sft_teacher     answer              question                                teacher's own solution
cft             critique            instruction + question + response       critique
==============  ==================  =====================================  ==========================================

Everything that depends on the objective reads this registry: the config checks (``cft_lab.config``), what the data
stage asks the teacher for and the data key (``cft_lab.pipeline.plan``), the per-arm counts of the dataset card, and
the row order and SFT/CFT families of the report. Table labels live in the YAML (``conf/objective/<name>.yaml``,
``label:``), read by :func:`labels`. Adding an objective is one :class:`Objective` entry here plus its YAML
(docs/extending.md shows one end to end).

>>> OBJECTIVES["cft"].teacher_work, OBJECTIVES["sft_teacher"].teacher_work, OBJECTIVES["sft"].teacher_work
('critique', 'answer', None)
>>> [n for n, o in OBJECTIVES.items() if o.family == "sft"]
['sft', 'sft_verified', 'sft_teacher']
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Union

from cft_lab.prompts import cft_user_turn, completion_suffix, render_prompt

if TYPE_CHECKING:
    from cft_lab.config import ObjectiveConfig
    from cft_lab.data.records import Record

log = logging.getLogger(__name__)

#: A record (as ``records.jsonl`` holds it) -> (user turn, target), or the reason the arm leaves it out.
PairFn = Callable[[Mapping, "ObjectiveConfig"], Union[tuple[str, str], str]]


@dataclass(frozen=True)
class Objective:
    """One training arm."""

    family: str  # "base" (no training) | "sft" (imitate a response) | "cft" (write a critique): the report's Δ
    pair: Optional[PairFn]  # None: nothing is trained (the base row)
    teacher_work: Optional[str] = None  # what the teacher must write: "critique" | "answer" | None
    uses: str = ""  # what it takes from the teacher, in words, for error messages ("verdicts", "critiques", ...)
    needs_response: bool = True  # records without a noisy response are left out ("no response")
    needs_instruction: bool = False  # objective.instruction must be set (the CFT instruction)
    # the paper drew its pairs from a larger pool than the cell's data (objective.pool=null follows data.pool)
    from_pool: bool = False

    @property
    def trains(self) -> bool:
        return self.pair is not None or self.family == "mix"


def _sft(r: Mapping, o: ObjectiveConfig) -> tuple[str, str] | str:
    return r["question"], r["response"]


def _sft_verified(r: Mapping, o: ObjectiveConfig) -> tuple[str, str] | str:
    if r.get("verdict") is None:
        return "verdict unparsed"
    if r["verdict"] != "right":
        return "judged wrong"
    return r["question"], r["response"]


def _sft_teacher(r: Mapping, o: ObjectiveConfig) -> tuple[str, str] | str:
    if not r.get("teacher_solution"):
        return "no teacher solution"
    return r["question"], r["teacher_solution"]


def _cft(r: Mapping, o: ObjectiveConfig) -> tuple[str, str] | str:
    if not r.get("critique"):
        return "no critique"
    return cft_user_turn(r["question"], r["response"], o.instruction or ""), r["critique"]


#: The one registry of objectives (insertion order = the paper's row order).
OBJECTIVES: dict[str, Objective] = {
    "base": Objective(family="base", pair=None),
    "sft": Objective(family="sft", pair=_sft),
    "sft_verified": Objective(
        family="sft", pair=_sft_verified, teacher_work="critique", uses="verdicts", from_pool=True
    ),
    "sft_teacher": Objective(
        family="sft", pair=_sft_teacher, teacher_work="answer", uses="solutions", needs_response=False
    ),
    "cft": Objective(family="cft", pair=_cft, teacher_work="critique", uses="critiques", needs_instruction=True),
    # CFT on a subset whose critique lengths match the SFT responses' (v4 Table 10; objective.length_match)
    "cft_short": Objective(family="cft", pair=_cft, teacher_work="critique", uses="critiques", needs_instruction=True),
    # one run over several parts, each built and masked by its own objective (objective.parts; v4 Table 9)
    "mixture": Objective(family="mix", pair=None),
}


def spec(objective: str | ObjectiveConfig) -> Objective:
    """The registry entry of an objective config (or name): a config with ``parts`` is a mixture."""
    if not isinstance(objective, str) and objective.parts:
        return OBJECTIVES["mixture"]
    return get(objective if isinstance(objective, str) else objective.name)


def get(name: str) -> Objective:
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise KeyError(f"objective={name} is unknown; choose one of {', '.join(OBJECTIVES)}") from None


def teacher_work(objective: str | ObjectiveConfig) -> list[str]:
    """What the teacher must write for this objective: ``[]``, ``["critique"]`` or ``["answer"]`` (in the data key;
    a mixture's parts each ask for their own, in their own data artefacts)."""
    work = spec(objective).teacher_work
    return [work] if work else []


def arms() -> list[str]:
    """The objectives that train one record set's pairs, in registry order (not the mixture)."""
    return [n for n, o in OBJECTIVES.items() if o.pair is not None]


def labels() -> dict[str, str]:
    """Each objective's table label, from its ``conf/objective/<name>.yaml`` (the name where there is none)."""
    return {name: cfg.label for name, cfg in default_configs(include_base=True).items()}


def default_configs(include_base: bool = False) -> dict[str, ObjectiveConfig]:
    """``ObjectiveConfig`` of every registered objective as its shipped YAML sets it (name only if it has none)."""
    from omegaconf import OmegaConf

    from cft_lab.config import ObjectiveConfig
    from cft_lab.paths import CONF_DIR

    out = {}
    for name, obj in OBJECTIVES.items():
        if obj.family == "mix" or (not obj.trains and not include_base):
            continue
        path = CONF_DIR / "objective" / f"{name}.yaml"
        node = OmegaConf.merge(
            OmegaConf.structured(ObjectiveConfig(name=name, label=name)), OmegaConf.load(path) if path.is_file() else {}
        )
        obj_cfg = OmegaConf.to_object(node)
        assert isinstance(obj_cfg, ObjectiveConfig)
        if obj_cfg.length_match is not None and not include_base:
            continue  # a length-matched subset of another arm's pairs: the train stage reports it, not the card
        out[name] = obj_cfg
    return out


# ---- pairs --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    id: str
    prompt: str
    completion: str


def build_pairs(objective: ObjectiveConfig, records: list[dict]) -> tuple[list[Pair], dict]:
    """Pairs for one objective, and counts of the records it used and skipped (with the reason)."""
    entry = spec(objective)
    if entry.pair is None:
        raise ValueError(f"objective={objective.name} has no training pairs of its own")
    if entry.needs_instruction and not objective.instruction:
        raise ValueError(
            f"objective={objective.name} needs objective.instruction (the critique instruction of "
            f"docs/protocol.md §1.2)"
        )
    tpl, system = objective.template, objective.system_prompt
    suffix = completion_suffix(tpl)
    pairs: list[Pair] = []
    skipped: Counter = Counter()
    for r in records:
        if entry.needs_response and not r.get("response"):
            skipped["no response"] += 1  # never train on the text "None"
            continue
        got = entry.pair(r, objective)
        if isinstance(got, str):
            skipped[got] += 1
            continue
        user, target = got
        pairs.append(Pair(r["id"], render_prompt(tpl, user, system), target + suffix))
    counts = {"records": len(records), "pairs": len(pairs), "skipped": dict(skipped)}
    if not pairs:
        raise ValueError(
            f"objective={objective.name}: no training pair out of {len(records)} records (skipped: {dict(skipped)})"
        )
    return pairs, counts


# ---- per-arm usage of one record set (the dataset card) ----------------------------------------------------------


def objectives_by_arm(objective_configs=None) -> dict:
    """Normalise ``None`` (the shipped configs of every arm), a mapping or a list of ``ObjectiveConfig`` to
    ``{arm: config}``."""
    if objective_configs is None:
        return default_configs()
    items = objective_configs.values() if isinstance(objective_configs, Mapping) else objective_configs
    return {o.name: o for o in items if spec(o).pair is not None}


def arm_pairs(records: list[Record], objective) -> tuple[list, dict]:
    """``build_pairs`` for one arm on :class:`~cft_lab.data.records.Record` objects, never raising on an arm with no
    usable record: ``(pairs, counts)`` with build_pairs' counts (``records``, ``pairs``, ``skipped`` by reason), and
    records without a response counted as ``"no response"`` for every arm (a card compares arms on one set)."""
    with_resp = [r for r in records if r.response is not None]
    missing = len(records) - len(with_resp)
    try:
        pairs, counts = build_pairs(objective, [r.to_dict() for r in with_resp]) if with_resp else ([], None)
    except ValueError as e:
        if "no training pair" not in str(e):
            raise
        pairs, counts = [], None
    if counts is None:  # build_pairs refused an empty result: every record was skipped, say so as a count
        counts = {
            "records": len(with_resp),
            "pairs": 0,
            "skipped": {f"unusable for {objective.name}": len(with_resp)} if with_resp else {},
        }
    counts = {"records": len(records), "pairs": counts["pairs"], "skipped": dict(counts["skipped"])}
    if missing:
        counts["skipped"]["no response"] = missing
    return pairs, counts


def arm_usage(records: list[Record], objective_configs=None) -> dict:
    """Per arm: how many records it can use, why the others are left out and their statuses; and matched ids.

    ``{"arms": {arm: {"usable", "skipped": {reason: n}, "unusable_by_status": {status: n}}},
    "usable_by_all_arms": n}``. The selection rule is ``build_pairs``' (not repeated here).

    >>> from cft_lab.data.records import Record
    >>> rs = [Record(id="a", question="q", response="y"),
    ...       Record(id="b", question="q", response="y").with_critique("Conclusion: right [END]",
    ...                                                                  teacher={"name": "t"})]
    >>> u = arm_usage(rs)
    >>> u["arms"]["cft"]["usable"], u["arms"]["cft"]["unusable_by_status"], u["usable_by_all_arms"]
    (1, {'no_teacher': 1}, 0)
    """
    result, usable_ids = {}, []
    for arm, obj in objectives_by_arm(objective_configs).items():
        pairs, counts = arm_pairs(records, obj)
        ids = {p.id for p in pairs}
        status = Counter(r.status for r in records if r.id not in ids)
        result[arm] = {
            "usable": len(pairs),
            "skipped": counts["skipped"],
            "unusable_by_status": dict(sorted(status.items())),
        }
        usable_ids.append(ids)
    common = set.intersection(*usable_ids) if usable_ids else set()
    return {"arms": result, "usable_by_all_arms": len(common)}
