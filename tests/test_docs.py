"""The repository explains itself: every reference to a document resolves.

Code, configs, tests and docs cite ``docs/protocol.md §3.1``, ``docs/pitfalls.md#training`` or a test as
``tests/test_x.py::test_y``; each such reference must name a file that exists, a numbered section or heading anchor
that exists in it, and a test function that exists. Documents outside the repository (the paper's reconstruction
notes, design notes) are never cited: a reader of a clone must be able to follow every pointer."""

from __future__ import annotations

import re
import subprocess

import pytest

from conftest import REPO

_TRACKED = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
TEXT_FILES = [
    f
    for f in _TRACKED
    if re.search(r"\.(py|yaml|md|toml|json)$|^Makefile$|^\.ci/run$", f)
    and not f.startswith("tests/fixtures/")
    and (REPO / f).is_file()
]
DOC_REF = re.compile(r"docs/([\w-]+\.md)((?:\s*(?:§\s?[\d.]*\d|and|,|[-–])\s*)*)(#[\w-]+)?")
TEST_REF = re.compile(r"tests/(test_\w+\.py)::(test_\w+)")
OUTSIDE = re.compile(r"\bPROTOCOL §|\bPITFALLS\b|MACHINE-NOTES|INFERENCE-PROMPTS|PROVENANCE\.md|\.\./shared\b")


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def _headings(doc: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^#+\s+(.+?)\s*$", (REPO / "docs" / doc).read_text(), re.M)]


def _sections(doc: str) -> set[str]:
    return {m.group(1) for h in _headings(doc) for m in [re.match(r"(\d+(?:\.\d+)*)\.?\s", h)] if m}


def _references():
    for f in TEXT_FILES:
        text = (REPO / f).read_text(encoding="utf-8", errors="replace")
        for lineno, line in enumerate(text.splitlines(), 1):
            for m in DOC_REF.finditer(line):
                yield f"{f}:{lineno}", m.group(1), re.findall(r"§\s?([\d.]*\d)", m.group(2) or ""), m.group(3)


REFS = list(_references())


def test_the_docs_are_cited_and_found():
    cited = {doc for _, doc, _, _ in REFS}
    assert {"protocol.md", "pitfalls.md", "extending.md", "benchmarks.md"} <= cited
    assert len(REFS) > 80  # the code cites the protocol and the pitfalls throughout


@pytest.mark.parametrize("where,doc,sections,anchor", REFS, ids=[r[0] for r in REFS])
def test_doc_reference_resolves(where, doc, sections, anchor):
    assert (REPO / "docs" / doc).is_file(), f"{where}: docs/{doc} does not exist"
    known = _sections(doc)
    for s in sections:
        assert s in known, f"{where}: docs/{doc} has no section §{s}"
    if anchor:
        slugs = {_slug(h) for h in _headings(doc)}
        assert anchor[1:] in slugs, f"{where}: docs/{doc} has no heading for {anchor}"


def test_tests_cited_by_the_docs_exist():
    cited = [
        (f, m.group(1), m.group(2))
        for f in TEXT_FILES
        if f.startswith("docs/")
        for m in TEST_REF.finditer((REPO / f).read_text())
    ]
    assert len(cited) > 20
    missing = [
        f"{f}: tests/{file}::{fn}"
        for f, file, fn in cited
        if not (REPO / "tests" / file).is_file()
        or not re.search(rf"^def {fn}\(", (REPO / "tests" / file).read_text(), re.M)
    ]
    assert not missing, missing


def test_no_citation_of_documents_outside_the_repository():
    found = [
        f"{f}:{n}: {line.strip()}"
        for f in TEXT_FILES
        if f != "tests/test_docs.py"
        for n, line in enumerate((REPO / f).read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not found, "\n".join(found)
