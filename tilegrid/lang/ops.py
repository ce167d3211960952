"""Functions a thread body calls. Thread bodies are compiled, never run as Python, so each
of these only documents the op; calling one outside a thread is a clear error."""

from __future__ import annotations

import builtins
import sys

from tilegrid.errors import SourceLoc, TilegridError
from tilegrid.ops import API


def _only_in_thread(name: str):
    def op(*args, **kwargs):
        caller = sys._getframe(1)
        raise TilegridError(
            f"{name}() can only be used inside a @compute() or @datamovement() thread",
            SourceLoc(caller.f_code.co_filename, caller.f_lineno),
            note="thread bodies are compiled by tilegrid; they are never called as Python",
        )

    op.__name__ = name
    op.__qualname__ = name
    return op


def _doc(name: str, doc: str):
    f = _only_in_thread(name)
    f.__doc__ = doc
    return f


core_index = _doc("core_index", "core_index(dim) -> int: this core's row (0) or column (1) in the grid.")
dma = _doc(
    "dma",
    """dma(src, dst) -> handle with .wait().

    Read: `dma(stream[i, j], cb.reserve())` copies a DRAM block into a reserved slot; the slot
    is pushed when `.wait()` returns. Write: `dma(cb.pop(), stream[i, j])` copies a popped block
    to DRAM.""",
)
fill = _doc(
    "fill",
    """fill(value, shape, dtype="f32") -> block: every element `value` (`-inf`, `inf`, `nan` may be
    written bare). `shape` is in elements: (32, 1) is one tile column, (32, 32) one tile.""",
)
rowmax = _doc("rowmax", "rowmax(x, acc=None) -> [M,1] block: max across each row, folded with `acc` if given.")
rowsum = _doc("rowsum", "rowsum(x, acc=None) -> [M,1] block: sum across each row, plus `acc` if given.")
colmax = _doc("colmax", "colmax(x, acc=None) -> [1,N] block: max down each column, folded with `acc`.")
colsum = _doc("colsum", "colsum(x, acc=None) -> [1,N] block: sum down each column, plus `acc`.")
maximum = _doc("maximum", "maximum(a, b): elementwise max, with [M,1] / [1,N] broadcasting.")
minimum = _doc("minimum", "minimum(a, b): elementwise min, with [M,1] / [1,N] broadcasting.")
where = _doc("where", "where(cond, a, b): a where cond != 0, else b (a or b may be scalars).")
transpose = _doc("transpose", "transpose(x): also `x.transpose()`.")
matmul = _doc("matmul", "matmul(a, b): also `a @ b`.")
row_index = _doc(
    "row_index",
    "row_index(shape) -> block: each element's row index in the block, as a number (for masks).",
)
col_index = _doc("col_index", "col_index(shape) -> block: each element's column index in the block.")


def _table_functions() -> dict[str, object]:
    """One function per user-facing op-table name (tilegrid/ops.py), documented from the table."""
    out = {}
    for name, d in API.items():
        if name in globals() or hasattr(builtins, name):  # abs(x), pow(x, n): Python's own names work
            continue
        extra = "".join(f", {p.name}" for p in d.params) + "".join(f", {k}=False" for k in d.variants)
        out[name] = _doc(name, f"{name}(x{extra}): {d.doc} (also `x.{name}(...)`).")
    return out


TABLE_FUNCTIONS = _table_functions()
globals().update(TABLE_FUNCTIONS)


class Semaphore:
    """A counter on every core, for handshakes between cores (made in the kernel function).

    In a thread: `sem.set(v)` / `sem.inc(v=1)` on this core, or on another core with
    `core=(y, x)`, or on a rectangle of cores with `core=(y, x), mcast=(h, w)`;
    `sem.wait(v, reset=None)` blocks until this core's value equals v, then sets it to `reset`.
    """

    def __init__(self, initial: int = 0) -> None:
        if not isinstance(initial, int):
            raise TilegridError(f"Semaphore(initial) takes an integer, got {initial!r}")
        self.initial = initial
