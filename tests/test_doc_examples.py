"""The Python examples of the README and of the documentation pages run, and every `# => value` comment in them is true."""

import inspect
import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _blocks():
    """(page, index within the page, code) of every Python block; a page's blocks share one namespace, in order."""
    out = []
    for page in PAGES:
        for i, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)):
            out.append((page.relative_to(ROOT).as_posix(), i, code))
    return out


def page_showing(marker):
    """The text of the one documentation page (or README) that contains ``marker``."""
    found = [p for p in PAGES if marker in p.read_text(encoding="utf-8")]
    assert len(found) == 1, (marker, found)
    return found[0].read_text(encoding="utf-8")


def _checked(block):
    """Turn `expr  # => value` (value possibly on the next, indented line) into assertions."""
    lines, out = block.splitlines(), []
    for i, line in enumerate(lines):
        m = re.match(r"^(\S.*?)\s*# => (.*?)(\s\s\(.*)?$", line)
        nxt = re.match(r"^\s+# => (.*?)(\s\s\(.*)?$", lines[i + 1]) if i + 1 < len(lines) else None
        if m:
            out.append(f"assert ({m.group(1)}) == ({m.group(2)}), {m.group(1)!r}")
        elif nxt and line.strip():
            out.append(f"assert ({line.strip()}) == ({nxt.group(1)}), {line.strip()!r}")
        elif not re.match(r"^\s+# =>", line):
            out.append(line)
    return "\n".join(out)


def _coord_check_fixture():
    from abcparam.pytest_plugin import abc_coord_check

    return abc_coord_check.__wrapped__()


_FIXTURES = {"abc_coord_check": _coord_check_fixture}


_PAGES_BLOCKS = {}
for _page, _i, _code in _blocks():
    _PAGES_BLOCKS.setdefault(_page, []).append(_code)


@pytest.mark.parametrize("page", sorted(_PAGES_BLOCKS))
def test_every_python_block_of_the_page_runs(page):
    """A page's blocks run in order in one namespace (a later block may use an earlier one's names)."""
    namespace = {"Fraction": __import__("fractions").Fraction}
    for index, block in enumerate(_PAGES_BLOCKS[page]):
        code = _checked(block)
        if re.search(r"^import .*\btransformers\b", code, flags=re.M):
            pytest.importorskip("transformers")  # the optional [hf] extra
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a snippet a user copies must run without a warning
            exec(compile(code, f"{page} block {index}", "exec"), namespace)
            # a test function a block shows is run too, with abcparam's fixture where it asks for one
            for name, fn in list(namespace.items()):
                if name.startswith("test_") and callable(fn):
                    fn(*[_FIXTURES[arg]() for arg in inspect.signature(fn).parameters])
                    del namespace[name]


def test_the_pages_have_python_blocks():
    assert {"README.md", "docs/guide/layers.md", "docs/guide/transformers.md", "docs/guide/ci.md",
            "docs/guide/checkpoints.md"} <= set(_PAGES_BLOCKS)


@pytest.mark.parametrize("command", ["abcparam classify --preset mup --depth 3 --optimizer adam",
                                     "abcparam classify --preset sp --depth 3"])
def test_the_docs_show_the_real_classify_output(command, capsys):
    from abcparam.cli import main

    text = page_showing(f"`{command}`")
    start = text.index("```\n", text.index(f"`{command}`")) + 4
    shown = text[start:text.index("```", start)]
    assert main(command.split()[1:]) == 0
    assert capsys.readouterr().out == shown
