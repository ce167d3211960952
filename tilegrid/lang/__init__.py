"""The user API: the names a kernel writer imports from `tilegrid`."""

from tilegrid.lang import ops as _ops
from tilegrid.lang.kernel import Program, pykernel_gen
from tilegrid.lang.ops import (
    TABLE_FUNCTIONS,
    Semaphore,
    col_index,
    colmax,
    colsum,
    core_index,
    dma,
    fill,
    matmul,
    maximum,
    minimum,
    row_index,
    rowmax,
    rowsum,
    transpose,
    where,
)
from tilegrid.lang.spec import Stream, compute, datamovement

globals().update(TABLE_FUNCTIONS)  # exp, recip, sqrt, gelu, clamp, ... (one per op-table entry)

__all__ = [
    "Program",
    "Semaphore",
    "Stream",
    "col_index",
    "colmax",
    "colsum",
    "compute",
    "core_index",
    "datamovement",
    "dma",
    "fill",
    "matmul",
    "maximum",
    "minimum",
    "pykernel_gen",
    "row_index",
    "rowmax",
    "rowsum",
    "transpose",
    "where",
]
__all__ += sorted(TABLE_FUNCTIONS)
del _ops
