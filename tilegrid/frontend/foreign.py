"""The one rule for functions of other modules (NumPy, math, torch) inside a thread.

A thread is compiled, never run as NumPy, so `np.mean(blk)` cannot mean what NumPy means. The
rule: a module function whose name is a tilegrid operation on blocks (an elementwise op of the op
table, `maximum`, `minimum`, `where`, `transpose`, `matmul`) is that operation (`np.exp(x)` is
`exp(x)`); on numbers known when the kernel compiles it is the module's own function
(`math.sqrt(2.0)`); every other module function is refused, naming the block method that does
its job.
"""

from __future__ import annotations

from tilegrid.ops import API

BLOCK_FUNCTIONS = frozenset(API) | {"transpose", "matmul"}

_SUM = "x.rowsum() ([M,1]) or x.colsum() ([1,N])"
_MEAN = "x.rowsum() * (1.0 / N) for a row mean ([M,1]), x.colsum() * (1.0 / M) for a column mean"
_MAX = "x.rowmax() ([M,1]) or x.colmax() ([1,N]), or maximum(a, b) elementwise"
_MIN = "minimum(a, b) elementwise, or -((-x).rowmax()) for a row minimum"
HINTS = {
    "mean": _MEAN, "average": _MEAN, "sum": _SUM, "nansum": _SUM, "max": _MAX, "amax": _MAX, "min": _MIN,
    "amin": _MIN,
    "var": "((x - m) ** 2).rowsum() * (1.0 / N) with m = x.rowsum() * (1.0 / N)",
    "std": "(((x - m) ** 2).rowsum() * (1.0 / N)).sqrt() with m = x.rowsum() * (1.0 / N)",
    "dot": "a @ b", "einsum": "a @ b (and .transpose())", "clip": "x.clamp(lo, hi)", "negative": "-x",
    "reciprocal": "x.recip()", "power": "x ** n (n an integer known when the kernel compiles)", "square": "x ** 2",
    "exp2": "(x * math.log(2.0)).exp()", "expm1": "x.exp() - 1.0",
    "zeros": "fill(0.0, shape)", "ones": "fill(1.0, shape)", "full": "fill(value, shape)",
    "zeros_like": "fill(0.0, x.shape)", "ones_like": "fill(1.0, x.shape)", "full_like": "fill(value, x.shape)",
    "arange": "row_index(shape) or col_index(shape)",
    "softmax": "(x - x.rowmax()).exp(), times the .rowsum().recip() of that",
}


def refusal_note(module: str, name: str) -> str:
    """What to write instead of `module.name(...)` in a thread."""
    hint = HINTS.get(name)
    rule = (f"a thread is compiled, not run by {module}: a module function is accepted only where its name is a "
            "tilegrid operation (np.exp(x) is exp(x)); docs/language.md, 'Functions of other modules'")
    return f"use {hint or 'the block methods (x.exp(), x.rowsum(), a @ b, ...)'}; {rule}"
