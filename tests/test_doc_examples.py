"""The README's Python examples run, and every `# => value` comment in them is true."""

import inspect
import re
import warnings
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


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


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_readme_python_block(index):
    code = _checked(_blocks()[index])
    if re.search(r"^import .*\btransformers\b", code, flags=re.M):
        pytest.importorskip("transformers")  # the optional [hf] extra
    namespace = {"Fraction": __import__("fractions").Fraction}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a snippet a user copies must run without a warning
        exec(compile(code, f"README block {index}", "exec"), namespace)
        # a test function a block shows is run too, with abcparam's fixture where it asks for one
        for name, fn in list(namespace.items()):
            if name.startswith("test_") and callable(fn):
                fn(*[_FIXTURES[arg]() for arg in inspect.signature(fn).parameters])


@pytest.mark.parametrize("command", ["abcparam classify --preset mup --depth 3 --optimizer adam",
                                     "abcparam classify --preset sp --depth 3"])
def test_readme_shows_the_real_classify_output(command, capsys):
    from abcparam.cli import main

    text = README.read_text(encoding="utf-8")
    start = text.index("```\n", text.index(f"`{command}`")) + 4
    shown = text[start:text.index("```", start)]
    assert main(command.split()[1:]) == 0
    assert capsys.readouterr().out == shown
