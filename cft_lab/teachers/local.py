"""A teacher running on a local model through the generation backend (``teacher.kind=vllm`` or ``hf``).

The teacher's messages (the same versioned prompts as the ``openai`` teacher, :mod:`.prompts`) are rendered with the
model's own chat template (an instruct model's template is part of the model), then generated with the cell's
generation backend: temperature, top_p and max_tokens from the teacher config, one sample, a per-task seed derived
from the record id (so a task's critique does not depend on which other tasks ran with it). Costs are zero; token
counts are the generated tokens. A model without a chat template is refused with a clear error.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace

from cft_lab.config import Config, ModelConfig
from cft_lab.prompts.teacher import render_messages
from cft_lab.teachers.base import TeacherResult, TeacherTask, failed_result

log = logging.getLogger(__name__)


def task_seed(task: TeacherTask, base: int) -> int:
    """A stable 31-bit seed per (record, kind).

    >>> task_seed(TeacherTask("r1", "critique", "q", "y"), 0) == task_seed(TeacherTask("r1", "critique", "x", None), 0)
    True
    """
    h = hashlib.sha256(f"{base}:{task.kind}:{task.record_id}".encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


class LocalTeacher:
    def __init__(self, cfg: Config, sampling: dict):
        t = cfg.teacher
        if not t.model:
            raise ValueError(f"teacher={t.name} (kind {t.kind}) needs teacher.model: a hub id or a model directory")
        self.name, self.model, self.prompt_version = t.name, t.model, t.prompt_version
        self.sampling = dict(sampling)
        self.seed = t.seed
        self.model_cfg = ModelConfig(
            name=t.name,
            label=t.label or t.name,
            source="hub",
            path=t.model,
            dtype=cfg.model.dtype,
            trust_remote_code=cfg.model.trust_remote_code,
        )
        self.inference = replace(
            cfg.inference, backend=t.kind, temperature=t.temperature, top_p=t.top_p, n=1, max_new_tokens=t.max_tokens
        )

    def describe(self) -> dict:
        return {
            "name": self.name,
            "kind": self.inference.backend,
            "model": self.model,
            "prompt_version": self.prompt_version,
            "sampling": dict(self.sampling),
        }

    def run(
        self, tasks: list[TeacherTask], *, retry_failed: bool = False, progress: bool = True
    ) -> list[TeacherResult]:
        from cft_lab.eval.generation import make_generator
        from cft_lab.train.modeling import load_tokenizer

        tok = load_tokenizer(self.model, None, self.model_cfg.trust_remote_code)
        if not getattr(tok, "chat_template", None):
            raise ValueError(
                f"teacher model {self.model} has no chat template; a local teacher renders its "
                f"messages with the model's own template"
            )
        prompts = [
            tok.apply_chat_template(
                render_messages(t.kind, t.question, t.response, self.prompt_version),
                tokenize=False,
                add_generation_prompt=True,
            )
            for t in tasks
        ]
        generator = make_generator(self.model, self.model_cfg, self.inference)
        try:
            outs = generator.generate(
                prompts, [], seeds=[task_seed(t, self.seed) for t in tasks], desc=f"teacher {self.name}"
            )
        finally:
            generator.close()
        results = []
        for task, prompt, out in zip(tasks, prompts, outs):
            c = out[0]
            key = hashlib.sha256(f"{self.model}\0{prompt}\0{sorted(self.sampling.items())}".encode()).hexdigest()
            if not c.text.strip():
                results.append(
                    failed_result(
                        task,
                        "empty generation",
                        prompt_version=self.prompt_version,
                        sampling=self.sampling,
                        cache_key=key,
                        model=self.model,
                        attempts=1,
                    )
                )
                continue
            results.append(
                TeacherResult(
                    task.record_id,
                    task.kind,
                    "ok",
                    c.text,
                    None,
                    self.model,
                    self.prompt_version,
                    dict(self.sampling),
                    len(tok(prompt)["input_ids"]),
                    c.tokens,
                    0.0,
                    key,
                    1,
                    False,
                    c.finish_reason,
                )
            )
        return results
