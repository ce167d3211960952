"""Small helpers every pass shares: locations and errors that point at the user's line."""

from __future__ import annotations

from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import Operation

from tilegrid.errors import CompileError
from tilegrid.ir.core import CBPopOp, ProgramOp


def loc_of(op: Operation) -> str | None:
    a = op.attributes.get("loc")
    return a.data if isinstance(a, StringAttr) else None


def copy_loc(src: Operation, dst: Operation) -> Operation:
    if "loc" in src.attributes:
        dst.attributes["loc"] = src.attributes["loc"]
    return dst


def op_error(op: Operation, message: str, note: str | None = None) -> CompileError:
    return CompileError(message, loc_of(op), note=note)


def program_of(module: ModuleOp) -> ProgramOp:
    for op in module.ops:
        if isinstance(op, ProgramOp):
            return op
    raise CompileError("module holds no tilegrid.program")


def releases_between(first: Operation, last: Operation) -> bool:
    """Whether a CB slot is released (a `tilegrid.cb_pop`, at any depth) between two ops of one block.

    A rewrite that moves `first` down to `last` must not move a read of a CB slot past its release."""
    o = first.next_op
    while o is not None and o is not last:
        if any(isinstance(x, CBPopOp) for x in o.walk()):
            return True
        o = o.next_op
    return False
