"""Every reference to the theory document points at a section that exists there."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THEORY = ROOT / "docs" / "theory.md"


def _sections():
    return {int(m) for m in re.findall(r"^## (\d+)\. ", THEORY.read_text(encoding="utf-8"), flags=re.M)}


def _references():
    files = [ROOT / "README.md", *sorted((ROOT / "abcparam").rglob("*.py")), *sorted((ROOT / "benchmarks").glob("*.py"))]
    for path in files:
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"docs/theory\.md,? sections? ([\d, and-]+)", text):
            for part in re.findall(r"\d+(?:-\d+)?", m.group(1)):
                lo, _, hi = part.partition("-")
                for n in range(int(lo), int(hi or lo) + 1):
                    yield path.name, n


def test_theory_document_exists_and_every_cited_section_is_there():
    sections = _sections()
    assert sections == set(range(1, max(sections) + 1))
    refs = list(_references())
    assert len(refs) > 20  # the code really cites it
    missing = sorted({(f, n) for f, n in refs if n not in sections})
    assert not missing, missing


def test_nothing_points_at_a_file_the_repository_lacks():
    for path in [ROOT / "README.md", *(ROOT / "abcparam").rglob("*.py")]:
        assert "THEORY.md" not in path.read_text(encoding="utf-8"), path
