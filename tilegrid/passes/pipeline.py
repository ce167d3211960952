"""The compiler pipeline: one ordered list of passes, with the IR form between stages."""

from __future__ import annotations

from collections.abc import Callable

from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass
from xdsl.utils.exceptions import VerifyException

from tilegrid import ir
from tilegrid.errors import CompileError
from tilegrid.passes.allocate_dst import AllocateDst
from tilegrid.passes.allocate_l1 import AllocateL1
from tilegrid.passes.fuse_elementwise import FuseElementwise
from tilegrid.passes.implicit_data_movement import ImplicitDataMovement
from tilegrid.passes.infer_shapes import InferShapes
from tilegrid.passes.lower_to_tile import LowerToTile

PIPELINE: list[ModulePass] = [
    # block IR from the frontend: value-semantics block ops, CB / DMA ops, scf loops
    InferShapes(),
    # broadcasts explicit; every block op's type checked
    ImplicitDataMovement(),
    # every CB the compute thread uses has a producer / consumer thread
    FuseElementwise(),
    # elementwise chains are block.fused groups, each within DST capacity
    LowerToTile(),
    # tile IR: buffers explicit (tilegrid.alloc), math is tile.compute / matmul / reduce / transpose
    AllocateDst(),
    # every DST value has a slot, every tile op a subblock that fits DST
    AllocateL1(),
    # every buffer has an L1 offset; the kernel fits the core's L1
]


def verify(module: ModuleOp, after: str) -> None:
    try:
        module.verify()
    except VerifyException as e:
        raise CompileError(f"internal compiler error: IR does not verify after {after}: {e}") from e


def run_pipeline(module: ModuleOp, dump: Callable[[str, str], None] | None = None) -> ModuleOp:
    """Run every pass in order, verifying after each; `dump(stage, text)` sees the IR."""
    ctx = ir.context()
    verify(module, "the frontend")
    if dump:
        dump("frontend", ir.to_text(module))
    for p in PIPELINE:
        p.apply(ctx, module)
        verify(module, p.name)
        if dump:
            dump(p.name, ir.to_text(module))
    return module
