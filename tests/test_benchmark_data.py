"""The shipped benchmark files: every record present and verified, tampering detected, GPQA never in plain text."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import zipfile

import pytest

from cft_lab.eval.benchmarks.files import BENCH_DIR, SOURCES, IntegrityError, load, manifest
from conftest import REPO

COUNTS = {
    "math": 5000,
    "math500": 500,
    "minerva_math": 272,
    "gsm8k": 1319,
    "olympiadbench": 675,
    "aime24": 30,
    "amc23": 40,
    "theoremqa": 800,
    "gpqa": 198,
    "mmlu_pro": 12032,
    "mmlu_pro_validation": 70,
    "math_val500": 500,
    "ifeval": 541,  # v4 Table 8
    "mt_bench": 80,
    "mt_bench_reference": 30,
    "mt_bench_judge_prompts": 8,
}


def test_every_benchmark_loads_verified_with_its_paper_count():
    assert set(manifest()) == set(SOURCES) == set(COUNTS)
    for name, count in COUNTS.items():
        assert len(load(name)) == count, name
    assert load("math")[0]["idx"] == 0 and "problem" in load("math")[0]  # file order kept
    math_problems = {r["problem"] for r in load("math")}
    # MATH-500 lies inside MATH (docs/pitfalls.md#checkpoint-selection)
    assert sum(r["problem"] in math_problems for r in load("math500")) == 500
    assert all(r["answer"] == "ABCDEFGHIJ"[r["answer_index"]] for r in load("mmlu_pro"))
    val = load("math_val500")  # the disjoint selection set: 500 MATH *train* problems, none in any test file
    assert not {r["problem"] for r in val} & math_problems and len({r["unique_id"] for r in val}) == 500
    assert all(r["unique_id"].startswith("train/") for r in val)


def test_a_changed_file_fails_its_checksum(tmp_path):
    root = tmp_path / "benchmarks"
    shutil.copytree(BENCH_DIR, root)
    entry = manifest(root)["amc23"]
    with gzip.open(root / entry["file"], "rb") as f:
        lines = f.read().split(b"\n")
    lines[0] = lines[0].replace(b"27.0", b"28.0", 1)
    with gzip.open(root / entry["file"], "wb") as f:
        f.write(b"\n".join(lines))
    with pytest.raises(IntegrityError, match="sha256"):
        load("amc23", root)


def test_gpqa_ships_only_inside_a_password_protected_zip():
    entry = manifest()["gpqa"]
    with zipfile.ZipFile(BENCH_DIR / entry["file"]) as zf:
        with pytest.raises(RuntimeError, match="password"):
            zf.read(entry["member"])  # encrypted: no plain text without the password
    records = load("gpqa")
    canary = records[0]["Canary String"].rsplit(":", 1)[-1]  # read from the zip: never written in the repo
    assert len(canary) == 36 and all(canary in r["Canary String"] for r in records)
    for probe in (canary, records[0]["Question"][:60]):  # no tracked text file holds GPQA in plain text
        tracked = subprocess.run(["git", "grep", "-l", "-I", "-F", probe], cwd=REPO, capture_output=True, text=True)
        assert tracked.stdout == "", tracked.stdout
