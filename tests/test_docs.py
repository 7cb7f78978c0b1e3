"""The documentation: cited theory sections exist, every public name is in the API reference, the README stays short with live links, and the site builds in strict mode."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THEORY = ROOT / "docs" / "theory.md"


def _sections():
    return {int(m) for m in re.findall(r"^## (\d+)\. ", THEORY.read_text(encoding="utf-8"), flags=re.M)}


def _references():
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "abcparam").rglob("*.py")),
             *sorted((ROOT / "benchmarks").glob("*.py"))]
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
    for path in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "abcparam").rglob("*.py")]:
        assert "THEORY.md" not in path.read_text(encoding="utf-8"), path


def test_every_public_name_is_in_the_api_reference():
    import abcparam

    api = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: abcparam\.(?:\w+\.)*(\w+)$", api, flags=re.M))
    assert set(abcparam.__all__) <= documented, sorted(set(abcparam.__all__) - documented)


def test_the_readme_is_short_and_its_links_lead_somewhere():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text) < 15_000
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target
    # exactly two set-up commands, both starting from the pinned torch
    commands = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    assert [c.strip() for c in commands] == ['pip install torch==2.13.0 && pip install -e . && abcparam demo',
                                            'pip install torch==2.13.0 && pip install -e ".[test]" && python -m pytest -q']


def test_the_site_builds_in_strict_mode(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (tmp_path / "api" / "index.html").read_text(encoding="utf-8").count('id="abcparam.') >= 50
