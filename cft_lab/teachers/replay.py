"""The ``replay`` teacher: critiques taken from a released dataset instead of asking a model.

Built from a mapping ``record_id -> critique text`` (the data stage supplies it from the WebInstruct-CFT rows'
``output``, which GPT-4o-2024-11-20 wrote with prompt v1, docs/protocol.md §1.2). A task whose record has no released
critique, and every ``answer`` task (the release holds no teacher answers), ends ``failed`` with a clear error.
Nothing is asked, so nothing costs anything and nothing is cached.

>>> t = ReplayTeacher({"wi-000001": "Fine.\\nConclusion: right [END]"})
>>> ok, missing = t.run([TeacherTask("wi-000001", "critique", "q", "y"), TeacherTask("wi-9", "critique", "q", "y")])
>>> ok.status, ok.text.splitlines()[-1], ok.cost_usd, ok.model
('ok', 'Conclusion: right [END]', 0.0, 'gpt-4o-2024-11-20')
>>> missing.status, missing.error
('failed', 'no released critique for record wi-9')
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from cft_lab.teachers.base import TeacherResult, TeacherTask, failed_result

RELEASED_MODEL = "gpt-4o-2024-11-20"  # the model that wrote WebInstruct-CFT's critiques (docs/protocol.md §1.2)


class ReplayTeacher:
    """Released critiques by record id."""

    def __init__(
        self,
        critiques: Mapping[str, str],
        *,
        name: str = "replay",
        model: str = RELEASED_MODEL,
        prompt_version: str = "v1",
        source: str = "TIGER-Lab/WebInstruct-CFT",
    ):
        self.name, self.model, self.prompt_version, self.source = name, model, prompt_version, source
        self._critiques = dict(critiques)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": "replay",
            "model": self.model,
            "prompt_version": self.prompt_version,
            "source": self.source,
            "critiques": len(self._critiques),
        }

    def run(
        self, tasks: list[TeacherTask], *, retry_failed: bool = False, progress: bool = True
    ) -> list[TeacherResult]:
        out = []
        for task in tasks:
            key = "replay:" + hashlib.sha256(f"{self.source}\0{task.record_id}".encode()).hexdigest()
            common = dict(prompt_version=self.prompt_version, sampling={}, cache_key=key)
            if task.kind != "critique":
                out.append(
                    failed_result(
                        task,
                        f"the replay teacher holds only released critiques, not {task.kind!r} "
                        "tasks; ask an openai teacher for the teacher's own answers",
                        **common,
                    )
                )
                continue
            text = self._critiques.get(task.record_id)
            if text is None:
                out.append(failed_result(task, f"no released critique for record {task.record_id}", **common))
                continue
            out.append(
                TeacherResult(
                    task.record_id,
                    task.kind,
                    "ok",
                    text,
                    None,
                    self.model,
                    self.prompt_version,
                    {},
                    0,
                    0,
                    0.0,
                    key,
                    0,
                    True,
                )
            )
        return out
