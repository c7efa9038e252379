"""A tuning sweep's report and its choices: ``make tune SCALE=tiny`` (``experiments/table/tune_tiny.yaml``).

The sweep's trials (``cft_lab.pipeline.tune``; one per model x arm x grid point, every arm the same grid: an equal
budget) are read from the run store; per (model, objective) the point with the highest validation accuracy of its
selected checkpoint is chosen; ties go to the cheaper point (fewer epochs, then the smaller learning rate). Written:

* ``conf/train/tuned/<scale>.yaml`` -- in the repository: the chosen values (``chosen: {model: {objective: {...}}}``,
  what ``train=<scale>_tuned`` reads through ``${tuned:...}``), how they were chosen, and every trial's score;
* ``<outputs>/tables/<table>.md`` / ``.csv`` -- the trials as a table (validation accuracy per grid point, chosen
  points marked), also printed.

Nothing here reads a test set: trials hold validation scores only.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import yaml

from cft_lab.config import Config, tuned_path
from cft_lab.pipeline.plan import plan_cell
from cft_lab.pipeline.store import Store
from cft_lab.pipeline.tune import read_trial, trial_key

log = logging.getLogger(__name__)

COLUMNS = ["model", "objective", "learning_rate", "num_train_epochs", "validation", "step", "status", "trial"]


def collect(configs: Sequence[Config]) -> pd.DataFrame:
    """One row per planned trial (a trial that never ran or failed has no validation score)."""
    rows = []
    for cfg in configs:
        key = trial_key(plan_cell(cfg))
        res = read_trial(Store(cfg.paths.outputs), key) or {"status": "missing"}
        val = res.get("validation") or {}
        rows.append(
            {
                "model": cfg.model.name,
                "objective": cfg.objective.name,
                "learning_rate": cfg.train.learning_rate,
                "num_train_epochs": cfg.train.num_train_epochs,
                "validation": val.get("accuracy"),
                "step": val.get("step"),
                "status": res["status"],
                "trial": key,
                "loss_tokens": (res.get("compute") or {}).get("loss_tokens"),
                "train_wall_s": (res.get("compute") or {}).get("train_wall_s"),
            }
        )
    return pd.DataFrame(rows)


def choose(trials: pd.DataFrame) -> dict:
    """``{model: {objective: {learning_rate, num_train_epochs, validation, step, trials}}}``: per (model, objective)
    the best validation accuracy, ties to fewer epochs, then the smaller learning rate. Every trial of a pair must
    have finished: a choice among part of the grid would not be an equal budget.

    >>> t = pd.DataFrame({"model": ["m"] * 3, "objective": ["cft"] * 3, "learning_rate": [1e-4, 3e-5, 1e-4],
    ...                   "num_train_epochs": [1.0, 1.0, 2.0], "validation": [60.0, 60.0, 59.5], "step": [10, 10, 20],
    ...                   "status": ["ok"] * 3})
    >>> choose(t)["m"]["cft"]
    {'learning_rate': 3e-05, 'num_train_epochs': 1.0, 'validation': 60.0, 'step': 10, 'trials': 3}
    """
    out: dict = {}
    for (model, objective), group in trials.groupby(["model", "objective"], sort=False):
        if (group["status"] != "ok").any():
            bad = group[group["status"] != "ok"]
            raise ValueError(
                f"{model}/{objective}: {len(bad)} of {len(group)} trials are not done "
                f"({', '.join(sorted(set(bad['status'])))}); rerun the sweep before choosing"
            )
        best = group.sort_values(
            ["validation", "num_train_epochs", "learning_rate"], ascending=[False, True, True], kind="stable"
        ).iloc[0]
        out.setdefault(str(model), {})[str(objective)] = {
            "learning_rate": float(best["learning_rate"]),
            "num_train_epochs": float(best["num_train_epochs"]),
            "validation": round(float(best["validation"]), 2),
            "step": int(best["step"]),
            "trials": len(group),
        }
    return out


def _kept_from(path: Path, trials: pd.DataFrame) -> tuple[dict, list[dict]]:
    """What an earlier sweep wrote for (model, objective) pairs this sweep does not cover: its choices and its trials.
    A sweep over part of the models (``make tune SCALE=tiny ARGS=model=tiny_math``) adds to the file; the pairs it
    covers are replaced whole (choice and trials)."""
    if not path.is_file():
        return {}, []
    old = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    swept = {(str(m), str(o)) for m, o in zip(trials["model"], trials["objective"])}
    kept: dict = {}
    for model, arms in (old.get("chosen") or {}).items():
        for objective, values in arms.items():
            if (model, objective) not in swept:
                kept.setdefault(model, {})[objective] = values
    rows = [r for r in old.get("trials") or [] if (r["model"], r["objective"]) not in swept]
    return kept, rows


def write_tuned(path: Path, chosen: dict, trials: pd.DataFrame, table: str, configs: Sequence[Config]) -> Path:
    """The repository file the tuned tables read (see the module doc); choices of pairs this sweep did not cover
    are kept (:func:`_kept_from`)."""
    cfg = configs[0]
    kept, kept_rows = _kept_from(path, trials)
    for model, arms in chosen.items():
        kept.setdefault(model, {}).update(arms)
    new_rows = [
        {k: (float(v) if k in ("learning_rate", "num_train_epochs", "validation") else v) for k, v in row.items()}
        for row in trials[["model", "objective", "learning_rate", "num_train_epochs", "validation", "step"]]
        .astype(object)
        .to_dict("records")
    ]
    rows = kept_rows + new_rows
    doc = {
        "how": (
            f"written by `python -m cft_lab table={table}` (make tune) on "
            f"{datetime.date.today().isoformat()}: per model and objective, the grid point whose selected checkpoint "
            f"scored best on {cfg.eval.select.benchmark} (validation split only; ties to fewer epochs, then the "
            f"smaller learning rate); train seed {cfg.train.seed}; everything else as train={cfg.train.name}"
        ),
        "grid": {
            "learning_rate": sorted({float(r["learning_rate"]) for r in rows}),
            "num_train_epochs": sorted({float(r["num_train_epochs"]) for r in rows}),
        },
        "chosen": kept,
        "trials": rows,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Tuned hyper-parameters of the tiny arms (docs/testbed.md §2). Regenerate with `make tune SCALE=tiny`.\n"
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False, width=118), encoding="utf-8")
    return path


def trials_markdown(trials: pd.DataFrame, chosen: dict, title: str) -> str:
    """Validation accuracy per (model, objective) row and (lr, epochs) column; the chosen point in bold."""
    trials = trials.copy()
    trials["point"] = [f"lr {lr:g}, {ep:g} ep" for lr, ep in zip(trials["learning_rate"], trials["num_train_epochs"])]
    points = list(dict.fromkeys(trials.sort_values(["num_train_epochs", "learning_rate"])["point"]))
    lines = [f"### {title}", "", "| model | objective | " + " | ".join(points) + " |"]
    lines.append("| :--- | :--- | " + " | ".join("---:" for _ in points) + " |")
    for (model, objective), group in trials.groupby(["model", "objective"], sort=False):
        pick = chosen.get(model, {}).get(objective)
        cells = []
        for point in points:
            row = group[group["point"] == point]
            if row.empty or pd.isna(row["validation"].iloc[0]):
                cells.append("—" if row.empty else str(row["status"].iloc[0]))
                continue
            value = f"{row['validation'].iloc[0]:.1f}"
            r = row.iloc[0]
            if pick and (pick["learning_rate"], pick["num_train_epochs"]) == (
                r["learning_rate"],
                r["num_train_epochs"],
            ):
                value = f"**{value}**"
            cells.append(value)
        lines.append(f"| {model} | {objective} | " + " | ".join(cells) + " |")
    lines += ["", "_Validation accuracy (%) of each trial's selected checkpoint; bold = chosen._", ""]
    return "\n".join(lines)


def render(table: str, configs: Sequence[Config], out_dir: Path | None = None, quiet: bool = False) -> dict:
    """Collect a tuning sweep's trials, choose, write the tuned file (when every trial is done) and the tables."""
    trials = collect(configs)
    out_dir = out_dir or Path(configs[0].paths.outputs) / "tables"
    out_dir.mkdir(parents=True, exist_ok=True)
    done = bool((trials["status"] == "ok").all())
    chosen = choose(trials) if done else {}
    scale = configs[0].train.name.removesuffix("_tuned")
    paths = {"csv": out_dir / f"{table}.csv", "md": out_dir / f"{table}.md"}
    trials.to_csv(paths["csv"], index=False)
    title = f"{table}: {int((trials['status'] == 'ok').sum())}/{len(trials)} trials done"
    paths["md"].write_text(trials_markdown(trials, chosen, title), encoding="utf-8")
    if done:
        paths["tuned"] = write_tuned(tuned_path(scale), chosen, trials, table, configs)
        log.info("tuned values written to %s", paths["tuned"])
    else:
        log.warning("%s: not every trial is done; the tuned file is left as it was", table)
    if not quiet:
        print(paths["md"].read_text(encoding="utf-8"), flush=True)
    return {"trials": trials, "chosen": chosen, "paths": paths}
