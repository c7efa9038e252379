"""The ``testbed`` teacher: an adapter over the rule teacher of :mod:`cft_lab.testbed.teacher`.

It needs each task's testbed ``Problem``: from the ``problems`` mapping given at construction (record id ->
Problem; the data stage has them, ``{p.id: p for p in problems.generate(...)}``), else from
``task.meta["problem"]``. A task with neither ends ``failed``. ``critique`` tasks call
``critique(problem, response, strength, seed, style)``; ``answer`` tasks call ``teacher_solution(problem, strength,
seed)``, exactly as ``cft_lab.data.stage._testbed_records`` does. Deterministic, free and not cached.

>>> from cft_lab.testbed.problems import Problem, Step
>>> p = Problem("tb-x", "q", (Step(12, "+", 7, 19),), 19)
>>> t = TestbedTeacher({"tb-x": p})
>>> crit, ans = t.run([TeacherTask("tb-x", "critique", "q", "Step 1: 12 + 7 = 20.\\nThe answer is \\\\boxed{20}."),
...                    TeacherTask("tb-x", "answer", "q", None)])
>>> crit.text.splitlines()[-1], ans.text.splitlines()[-1], crit.cost_usd
('Conclusion: wrong [END]', 'The answer is \\\\boxed{19}.', 0.0)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict

from cft_lab.teachers.base import TeacherResult, TeacherTask, failed_result
from cft_lab.teachers.cache import canonical_json
from cft_lab.testbed import teacher as tb_teacher
from cft_lab.testbed.problems import Problem

MODEL = "testbed-rule-teacher"


class TestbedTeacher:
    """The programmatic teacher of the CPU testbed (stands in for GPT-4o-1120 or, weakened, GPT-4o-mini)."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(
        self,
        problems: Mapping[str, Problem] | None = None,
        *,
        name: str = "testbed",
        strength: tb_teacher.TeacherStrength = tb_teacher.STRONG,
        seed: int = 0,
        style: str = "checklist",
    ):
        self.name, self.strength, self.seed, self.style = name, strength, seed, str(style)
        self._problems = dict(problems or {})
        # the style is named only when it is not the first release's, whose records stay byte-identical
        self.sampling = {
            **asdict(strength),
            "seed": seed,
            **({"style": self.style} if self.style != "checklist" else {}),
        }

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": "testbed",
            "model": MODEL,
            "prompt_version": "testbed",
            "sampling": dict(self.sampling),
        }

    def _problem(self, task: TeacherTask) -> Problem | None:
        if task.record_id in self._problems:
            return self._problems[task.record_id]
        meta = task.meta or {}
        return meta.get("problem")

    def run(
        self, tasks: list[TeacherTask], *, retry_failed: bool = False, progress: bool = True
    ) -> list[TeacherResult]:
        out = []
        for task in tasks:
            payload = {"kind": task.kind, "record_id": task.record_id, "response": task.response, **self.sampling}
            key = "testbed:" + hashlib.sha256(canonical_json(payload).encode()).hexdigest()
            common = dict(prompt_version="testbed", sampling=self.sampling, cache_key=key, model=MODEL)
            problem = self._problem(task)
            if problem is None:
                out.append(
                    failed_result(
                        task,
                        f"no testbed problem for record {task.record_id} (pass problems= "
                        "or meta={'problem': Problem})",
                        **common,
                    )
                )
                continue
            if task.kind == "critique":
                if task.response is None:
                    out.append(failed_result(task, "a critique task needs a response, got None", **common))
                    continue
                text = tb_teacher.critique(problem, task.response, self.strength, seed=self.seed, style=self.style).text
            elif task.kind == "answer":
                text = tb_teacher.teacher_solution(problem, self.strength, seed=self.seed)
            else:
                out.append(failed_result(task, f"unknown task kind {task.kind!r}", **common))
                continue
            out.append(
                TeacherResult(
                    task.record_id,
                    task.kind,
                    "ok",
                    text,
                    None,
                    MODEL,
                    "testbed",
                    dict(self.sampling),
                    0,
                    0,
                    0.0,
                    key,
                    1,
                    False,
                )
            )
        return out
