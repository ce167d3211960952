"""Every Python snippet of README.md and docs/*.md, as written.

A snippet runs as written (in a fresh process-like namespace, from a file in a temporary
directory, so its kernels' threads can be parsed), unless the line before it says otherwise:

- `<!-- doc-test: excerpt FILE -->`: it quotes FILE; every code line of it (comment-only lines
  are the doc's annotations) must be a line of FILE, so the quote cannot drift from the code;
- `<!-- doc-test: sketch -->`: an outline with placeholders (`...`, names it never defines): it must
  parse, its imports must run, and every call of an imported function or class must fit that
  callable's signature (its keywords exist, not too many positionals).

Pseudocode is fenced as `text`, not `python`.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"(?:^(<!-- doc-test: [^\n]*-->)\n)?^```python\n(.*?)^```", re.S | re.M)


def snippets() -> list[tuple[str, str, str]]:
    out = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        for m in FENCE.finditer(text):
            line = text[: m.start(2)].count("\n") + 1
            out.append((f"{path.relative_to(ROOT)}:{line}", (m.group(1) or "<!-- doc-test: run -->"), m.group(2)))
    return out


SNIPPETS = snippets()


def test_every_snippet_is_found():
    assert len(SNIPPETS) >= 8 and any(where.startswith("README.md") for where, _, _ in SNIPPETS)


@pytest.mark.parametrize("where, mode, code", SNIPPETS, ids=[s[0] for s in SNIPPETS])
def test_snippet(where, mode, code, tmp_path, monkeypatch):
    kind = mode.removeprefix("<!-- doc-test: ").removesuffix("-->").strip()
    if kind == "run":
        monkeypatch.chdir(tmp_path)  # what it writes lands here
        script = tmp_path / f"snippet_{where.replace('/', '_').replace(':', '_').replace('.', '_')}.py"
        script.write_text(code)
        runpy.run_path(str(script), run_name="__main__")
    elif kind.startswith("excerpt "):
        source = {line.strip() for line in (ROOT / kind.removeprefix("excerpt ")).read_text().splitlines()}
        quoted = [line.strip() for line in code.splitlines() if line.strip() and not line.strip().startswith("#")]
        missing = [line for line in quoted if line not in source]
        assert not missing, f"{where} quotes lines its source does not have: {missing}"
    elif kind == "sketch":
        check_sketch(where, code)
    else:
        pytest.fail(f"{where}: unknown doc-test mode {kind!r}")


INLINE = re.compile(r"`((?:tilegrid|flash_attention|matmul)[\w.]*\([^`]*\))`")


def inline_calls() -> list[tuple[str, str]]:
    """Calls of the API written inline in prose (`tilegrid.kernels.flash_attention(q, k, v, causal=...)`)."""
    out = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        for m in INLINE.finditer(text):
            out.append((f"{path.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}", m.group(1)))
    return out


@pytest.mark.parametrize("where, call", inline_calls(), ids=[w for w, _ in inline_calls()])
def test_inline_api_call(where, call):
    """The calls prose names fit the functions: tilegrid.kernels.flash_attention is a function whose
    keywords include those written."""
    head = call.split("(")[0].split(".")
    modules = [".".join(head[:n]) for n in range(1, len(head)) if importlib.util.find_spec(".".join(head[:n]))]
    check_sketch(where, "".join(f"import {m}\n" for m in modules)
                 + "from tilegrid.kernels import flash_attention, flash_attention_backward, matmul\n" + call)


def check_sketch(where: str, code: str) -> None:
    tree = ast.parse(code)
    ns: dict = {}
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            exec(compile(ast.Module([node], []), where, "exec"), ns)
    checked = 0
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        fn = resolve(call.func, ns)
        if fn is None or not callable(fn):
            continue
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            continue
        starred = any(isinstance(a, ast.Starred) for a in call.args)
        args = [] if starred else [None] * len(call.args)
        kwargs = {kw.arg: None for kw in call.keywords if kw.arg}
        try:
            sig.bind_partial(*args, **kwargs)
        except TypeError as e:
            pytest.fail(f"{where}: {ast.unparse(call)[:80]} does not fit {getattr(fn, '__name__', fn)}{sig}: {e}")
        checked += 1
    assert checked, f"{where}: a sketch whose calls name nothing it imports checks nothing"


def resolve(node: ast.expr, ns: dict):
    """The object a call's function names through imported names (None when it names anything else)."""
    if isinstance(node, ast.Name):
        return ns.get(node.id)
    if isinstance(node, ast.Attribute):
        base = resolve(node.value, ns)
        return getattr(base, node.attr, None) if base is not None else None
    return None
