"""tilegrid's IR on a pinned xDSL: the tilegrid, block and tile dialects plus upstream scf/arith."""

from __future__ import annotations

import io

from xdsl.context import Context
from xdsl.dialects import arith, builtin, scf
from xdsl.dialects.builtin import ModuleOp
from xdsl.parser import Parser
from xdsl.printer import Printer

from tilegrid.ir.block import BLOCK
from tilegrid.ir.core import TILEGRID
from tilegrid.ir.tile import TILE


def context() -> Context:
    """A context that knows every dialect tilegrid's IR may contain."""
    ctx = Context()
    for d in (builtin.Builtin, arith.Arith, scf.Scf, TILEGRID, BLOCK, TILE):
        ctx.load_dialect(d)
    return ctx


def to_text(module: ModuleOp) -> str:
    """MLIR text (generic op form, custom types), parseable by `parse`."""
    out = io.StringIO()
    Printer(stream=out, print_generic_format=True).print_op(module)
    return out.getvalue() + "\n"


def parse(text: str) -> ModuleOp:
    return Parser(context(), text).parse_module()
