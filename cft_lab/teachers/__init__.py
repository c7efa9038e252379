"""Teachers: who writes the critiques (and the teacher's own answers) for the data stage.

One interface (:mod:`cft_lab.teachers.base`): ``Teacher.run(tasks) -> results``, one result per task, in order.
Kinds (a literal dict, as in the config's ``teacher.kind``):

* ``openai`` (:mod:`.openai_teacher`): any OpenAI-compatible server, with a durable request cache, retries,
  cost and a USD budget;
* ``replay`` (:mod:`.replay`): the released critiques of a dataset, by record id;
* ``testbed`` (:mod:`.testbed`): the CPU testbed's rule teacher.

Prompts are pinned in :mod:`.prompts`; prices in :mod:`.pricing`; ``python -m cft_lab.teachers.run`` runs the
``openai`` teacher over a JSONL file of tasks.
"""

from cft_lab.teachers.base import Teacher, TeacherResult, TeacherTask, summarize
from cft_lab.teachers.openai_teacher import OpenAITeacher
from cft_lab.teachers.pricing import Price, PriceTable
from cft_lab.prompts.teacher import TEMPLATE_HASHES, render_messages
from cft_lab.teachers.replay import ReplayTeacher
from cft_lab.teachers.retry import TeacherFatalError
from cft_lab.teachers.testbed import TestbedTeacher

TEACHER_KINDS = {"openai": OpenAITeacher, "replay": ReplayTeacher, "testbed": TestbedTeacher}

__all__ = ["TEACHER_KINDS", "TEMPLATE_HASHES", "OpenAITeacher", "Price", "PriceTable", "ReplayTeacher", "Teacher",
           "TeacherFatalError", "TeacherResult", "TeacherTask", "TestbedTeacher", "render_messages", "summarize"]
