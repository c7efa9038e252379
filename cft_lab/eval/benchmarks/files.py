"""The paper's benchmark files, shipped inside the package and verified at load.

``cft_lab/assets/benchmarks/`` holds the ten benchmarks of docs/protocol.md §4.1 (plus MMLU-Pro's validation split, and
IF-Eval and MT-Bench with its reference answers and judge prompts for v4 Table 8, §4.6) as
gzip-compressed JSON Lines, byte-identical to the copies documented in the project's provenance notes once
decompressed; ``manifest.json`` gives each file's record count, the sha256 of its *uncompressed* bytes (the value
published in the provenance notes), source and license. ``load(name)`` checks both before returning a record, so a
corrupted or edited file fails loudly instead of shifting a score.

GPQA's authors ask that its questions never appear as plain text online, so GPQA ships only inside a
password-protected zip, as they distribute it; the password is the one they publish with their own zip. Records
keep the file's order (the paper harness's order).

Maintainers refresh the assets with ``python -m cft_lab.eval.benchmarks.files pack --source DIR`` from a folder laid
out like the provenance copies (``math/test.jsonl``, ``gpqa/gpqa_diamond.jsonl``, ...); nothing at run time reads
that folder.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import subprocess
import zipfile
from functools import cache
from pathlib import Path

from cft_lab.paths import ASSETS_DIR

BENCH_DIR = ASSETS_DIR / "benchmarks"
MANIFEST = BENCH_DIR / "manifest.json"
GPQA_PASSWORD = b"deserted-untie-orchid"  # published by the GPQA authors with their own zip

#: name -> (source file relative to the provenance folder, records, sha256 of the uncompressed file, license)
SOURCES = {
    "math": ("math/test.jsonl", 5000, "3371949f33dd702d04b43fddd7d53a028de0aaca0e76abb1b875a050297b3aa4", "MIT"),
    "math500": ("math500/test.jsonl", 500, "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132", "MIT"),
    "minerva_math": (
        "minerva_math/test.jsonl",
        272,
        "0e656b430d3a0a1dab6aa853f453ba3805e28e2cabe4fc72486a897cc09d8ba2",
        "MIT OCW (CC BY-NC-SA 4.0)",
    ),
    "gsm8k": ("gsm8k/test.jsonl", 1319, "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14", "MIT"),
    "olympiadbench": (
        "olympiadbench/test.jsonl",
        675,
        "bb8c1e38a16ea9eacb77530315a674d883f267fbff79183effc53681b4fcc416",
        "Apache-2.0",
    ),
    "aime24": (
        "aime24/test.jsonl",
        30,
        "af2b8bd2aa911b6333ad0df32f3ca05c7ae8ed10f1731f4372c8ae26990bf7ac",
        "problems (c) MAA",
    ),
    "amc23": (
        "amc23/test.jsonl",
        40,
        "43707e1ca784602d8479de24ee8ce36609dbebc46dd152b0b12a46611aa898a4",
        "problems (c) MAA",
    ),
    "theoremqa": (
        "theoremqa/test.jsonl",
        800,
        "9404db9e704011c187cac9e1bdaccf8caf7a4f6dc54b66078b0c687777fc8a84",
        "MIT",
    ),
    "gpqa": (
        "gpqa/gpqa_diamond.jsonl",
        198,
        "448f8cc4ac653036ede50101ad7a891114795bec226e8be9deffea8a9b75b011",
        "CC BY 4.0 (never as plain text)",
    ),
    "mmlu_pro": (
        "mmlu_pro/test.jsonl",
        12032,
        "3b97db79719b1c96f5f00dcc2b250495a60d74d98e9c3e35d83f1f3e9f118321",
        "MIT",
    ),
    "mmlu_pro_validation": (
        "mmlu_pro/validation.jsonl",
        70,
        "50ef14ad63d937da78d5e4d544a0d7363c17cac791daeea152eb7a92be923c55",
        "MIT",
    ),
    # A validation split disjoint from every test set (MATH-500, the paper's selection set, lies inside MATH):
    # 500 problems of the MATH *train* split, drawn with random.Random(0).sample and kept in file order.
    "math_val500": (
        "math/train.jsonl",
        7500,
        "3086b1daf75bccbc83351fd63b480b7590e52645981a463650354cd5bc32b7d8",
        "MIT",
    ),
    # General instruction following (v4 Table 8): IF-Eval's 541 prompts (google-research instruction_following_eval's
    # input_data.jsonl) and MT-Bench's 80 two-turn questions, GPT-4 reference answers and judge prompts (FastChat)
    "ifeval": (
        "ifeval/input_data.jsonl",
        541,
        "67ffeee0fcb87c317c5b08a2de85557b4a7e96ada6178aa645b4954fe4b53d49",
        "Apache-2.0 (google-research instruction_following_eval)",
    ),
    "mt_bench": (
        "mt_bench/question.jsonl",
        80,
        "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7",
        "Apache-2.0 (FastChat)",
    ),
    "mt_bench_reference": (
        "mt_bench/reference_answer/gpt-4.jsonl",
        30,
        "f957a5bc977badb66885ec970e6cd08527845780313f0995764260e5777b9b3f",
        "Apache-2.0 (FastChat); the texts are GPT-4 outputs",
    ),
    "mt_bench_judge_prompts": (
        "mt_bench/judge_prompts.jsonl",
        8,
        "fd283293406d024f44c174b094ef48031d0687a4682fd3a56b29b138f80281b6",
        "Apache-2.0 (FastChat)",
    ),
}
#: Shipped subsets of a source file: name -> (size, seed). The manifest records the subset's own sha256.
SUBSETS = {"math_val500": (500, 0)}


class IntegrityError(ValueError):
    """A shipped benchmark file does not match its manifest."""


def _read_bytes(name: str, entry: dict, root: Path) -> bytes:
    path = root / entry["file"]
    if entry["file"].endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            return zf.read(entry["member"], pwd=GPQA_PASSWORD)
    with gzip.open(path, "rb") as f:
        return f.read()


@cache
def manifest(root: Path = BENCH_DIR) -> dict:
    return json.loads((root / "manifest.json").read_text(encoding="utf-8"))


def load(name: str, root: Path = BENCH_DIR) -> list[dict]:
    """The records of one shipped benchmark, in file order, after checking count and sha256."""
    entries = manifest(root)
    if name not in entries:
        raise KeyError(f"no shipped benchmark {name!r}; shipped: {', '.join(sorted(entries))}")
    entry = entries[name]
    blob = _read_bytes(name, entry, root)
    got = hashlib.sha256(blob).hexdigest()
    if got != entry["sha256"]:
        raise IntegrityError(f"{root / entry['file']}: sha256 {got} != manifest {entry['sha256']}")
    records = []
    for lineno, line in enumerate(blob.decode("utf-8").split("\n"), 1):  # not splitlines: U+2028 in text
        if line.strip():
            try:
                records.append(json.loads(line))  # GPQA's pandas dump writes bare NaN, which json accepts
            except json.JSONDecodeError as e:
                raise IntegrityError(f"{root / entry['file']}:{lineno}: not valid JSON ({e.msg})") from e
    if len(records) != entry["records"]:
        raise IntegrityError(f"{root / entry['file']}: {len(records)} records, manifest says {entry['records']}")
    return records


def pack(source: Path, out: Path = BENCH_DIR) -> dict:
    """Compress the provenance copies into ``out`` and write the manifest (maintainers only)."""
    out.mkdir(parents=True, exist_ok=True)
    entries = {}
    for name, (rel, count, sha, license_) in SOURCES.items():
        raw = (source / rel).read_bytes()
        if hashlib.sha256(raw).hexdigest() != sha:
            raise IntegrityError(f"{source / rel}: sha256 differs from the provenance notes")
        entry = {"records": count, "sha256": sha, "license": license_, "source": rel}
        if name in SUBSETS:
            size, seed = SUBSETS[name]
            lines = raw.decode("utf-8").split("\n")[:count]
            keep = sorted(random.Random(seed).sample(range(count), size))
            raw = "".join(lines[i] + "\n" for i in keep).encode("utf-8")
            entry.update(
                records=size,
                sha256=hashlib.sha256(raw).hexdigest(),
                source_sha256=sha,
                subset=f"random.Random({seed}).sample(range({count}), {size}), file order",
            )
        if name == "gpqa":  # ZipCrypto via Info-ZIP, as GPQA's own zip; Python's zipfile reads it, cannot write it
            target = out / "gpqa.zip"
            target.unlink(missing_ok=True)
            subprocess.run(
                ["zip", "-j", "-q", "-X", "-P", GPQA_PASSWORD.decode(), str(target), str(source / rel)], check=True
            )
            entry.update(file="gpqa.zip", member=Path(rel).name)
        else:
            target = out / ((f"{name}.jsonl" if name in SUBSETS else rel.replace("/", "__")) + ".gz")
            with gzip.GzipFile(target, "wb", compresslevel=9, mtime=0) as f:  # mtime=0: reproducible bytes
                f.write(raw)
            entry["file"] = target.name
        entries[name] = entry
    (out / "manifest.json").write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
    manifest.cache_clear()
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description="Pack the benchmark files into cft_lab/assets/benchmarks.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--source", type=Path, required=True, help="folder with math/test.jsonl, gpqa/..., ...")
    args = parser.parse_args()
    entries = pack(args.source)
    for name, e in entries.items():
        print(f"{name:22} {e['records']:6d} records  {e['file']}")


if __name__ == "__main__":
    main()
