"""``python -m cft_lab export KEY --out DIR [--push-to-hub REPO]``: a built dataset as a Hugging Face dataset.

``KEY`` is a data artefact's key (``python -m cft_lab cells --data``) or a cell's key (its data stage is used). The
records with a critique become rows in the released WebInstruct-CFT schema (docs/protocol.md §1.2), so the result
trains with the paper's own scripts:

* ``instruction``: the CFT instruction; ``input``: ``"Question:\\n{question}\\n\\nSolution:\\n{response}"``;
  ``output``: the critique;
* plus the verdict and provenance columns: ``id``, ``verdict`` (right / wrong / null when unparsed),
  ``verdict_parse``, ``response_correct``, ``gold``, ``response_source``, ``teacher``, ``teacher_model``,
  ``prompt_version``, ``source`` (the source row's provenance, JSON), ``cost_usd``.

Records without a critique (failed, cut by the budget, or a dataset built for an arm that needs none) are not rows;
they are counted by status and printed, never dropped silently. The dataset is written with ``save_to_disk`` and the
dataset card (``card.md`` of the data artefact) beside it as ``README.md``; ``--push-to-hub REPO`` also uploads both
(``Dataset.push_to_hub``, then the card as the repository's README; the token comes from the usual Hugging Face
login or ``HF_TOKEN``).
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path

from cft_lab.pipeline.store import DONE, Store, read_jsonl

COLUMNS = ("instruction", "input", "output", "id", "verdict", "verdict_parse", "response_correct", "gold",
           "response_source", "teacher", "teacher_model", "prompt_version", "source", "cost_usd")  # fmt: skip


def data_dir(store: Store, key: str) -> Path:
    """The finished data artefact named by a data key or a cell key."""
    if (store.path("data", key) / "records.jsonl").is_file():
        path = store.path("data", key)
    else:
        cell = store.cell_result(key)
        data_key = (cell or {}).get("stages", {}).get("data")
        if data_key is None:
            what = "a cell without a data stage (objective=base)" if cell else "neither a data artefact nor a cell"
            raise FileNotFoundError(
                f"{key} is {what} in {store.root}; `python -m cft_lab cells --data` lists the data artefacts"
            )
        path = store.path("data", data_key)
    if not (path / DONE).is_file():
        raise ValueError(f"data artefact {path.name} is not finished (no {DONE}): rerun its data stage first")
    return path


def rows(records_path: Path) -> tuple[list[dict], Counter]:
    """The exported rows, and the records left out by reason."""
    from cft_lab.prompts import CFT_INSTRUCTION

    out, left_out = [], Counter()
    for r in read_jsonl(records_path):
        if not r.get("critique"):
            left_out[f"no critique (status {r.get('status')})"] += 1
            continue
        teacher = r.get("teacher") or {}
        out.append(
            {
                "instruction": CFT_INSTRUCTION,
                "input": f"Question:\n{r['question']}\n\nSolution:\n{r['response']}",
                "output": r["critique"],
                "id": r["id"],
                "verdict": r.get("verdict"),
                "verdict_parse": r.get("verdict_parse"),
                "response_correct": r.get("response_correct"),
                "gold": r.get("gold"),
                "response_source": r.get("response_source"),
                "teacher": teacher.get("name"),
                "teacher_model": teacher.get("model"),
                "prompt_version": teacher.get("prompt_version"),
                "source": json.dumps(r.get("source"), ensure_ascii=False, sort_keys=True),
                "cost_usd": r.get("cost_usd"),
            }
        )
    return out, left_out


def export(store: Store, key: str, out: Path, push_to_hub: str | None = None, private: bool = True) -> dict:
    """Write the dataset of ``key`` to ``out`` (and the hub); returns what was written and left out."""
    import datasets

    src = data_dir(store, key)
    data, left_out = rows(src / "records.jsonl")
    if not data:
        raise ValueError(
            f"data artefact {src.name} has no record with a critique ({dict(left_out)}): nothing to export"
        )
    features = datasets.Features(
        {
            **{c: datasets.Value("string") for c in COLUMNS},
            "response_correct": datasets.Value("bool"),
            "cost_usd": datasets.Value("float64"),
        }
    )
    ds = datasets.Dataset.from_list(data, features=features)
    out.mkdir(parents=True, exist_ok=True)
    ds.save_to_disk(str(out))
    card = (src / "card.md").read_text(encoding="utf-8")
    readme = out / "README.md"
    readme.write_text(card, encoding="utf-8")
    if push_to_hub:
        from huggingface_hub import HfApi

        ds.push_to_hub(push_to_hub, private=private)
        HfApi().upload_file(path_or_fileobj=str(readme), path_in_repo="README.md", repo_id=push_to_hub,
                            repo_type="dataset")  # fmt: skip
    return {"data": src.name, "rows": len(data), "left_out": dict(left_out), "out": str(out), "hub": push_to_hub}


def main(argv: list[str] | None = None) -> int:
    from cft_lab import cli

    return cli.run(_main, argv)


def _main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m cft_lab export", description=__doc__.split("\n")[0])
    p.add_argument("key", help="a data key (python -m cft_lab cells --data) or a cell key")
    p.add_argument("--out", type=Path, required=True, help="folder for save_to_disk (+ README.md, the card)")
    p.add_argument("--outputs", default=None, help="outputs folder (default $CFT_LAB_OUTPUTS or outputs)")
    p.add_argument("--push-to-hub", default=None, metavar="REPO", help="also push to this hub dataset repository")
    p.add_argument("--public", action="store_true", help="with --push-to-hub: a public repository (default private)")
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    a = p.parse_args(argv)
    store = Store(a.outputs or os.environ.get("CFT_LAB_OUTPUTS", "outputs"))
    res = export(store, a.key, a.out, a.push_to_hub, private=not a.public)
    skipped = ", ".join(f"{n} {why}" for why, n in res["left_out"].items()) or "none"
    print(f"exported {res['rows']} rows of data {res['data']} to {res['out']} (left out: {skipped})")
    if res["hub"]:
        print(f"pushed to https://huggingface.co/datasets/{res['hub']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
