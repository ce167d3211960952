"""lower-to-tile: block ops become tile ops on explicit buffers (`tilegrid.alloc` or the CB slot)."""

import pytest
from irtext import apply_pass, filecheck, program, run_pass

from tilegrid.errors import CompileError
from tilegrid.passes.lower_to_tile import LowerToTile

F = "!tilegrid.block<32x32xf32>"
BF = "!tilegrid.block<32x32xbf16>"
COL = "!tilegrid.block<32x1xf32>"
ROW = "!tilegrid.block<1x32xf32>"
ONE = "!tilegrid.block<1x1xf32>"


def compute(body: str) -> str:
    return program('    "tilegrid.thread"() <{kind = "compute", name = "comp"}> ({\n' + body + "\n    }) : () -> ()")


# block.fused -> one alloc per result + tile.compute(ins, scalars, outs). Each input is loaded into
# DST at its first use (a broadcast [M,1] input as a `col` load), each result is packed right
# after it is computed, scalars are the body's block arguments; users of the results now read
# the buffers.
def test_fused_becomes_compute():
    out = run_pass(LowerToTile(), compute(f"""
      %x = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {F}
      %c = "tilegrid.cb_wait"() <{{cb = #builtin.int<1>}}> : () -> {COL}
      %s = "arith.constant"() <{{value = 2.000000e+00 : f32}}> : () -> f32
      %f:2 = "block.fused"(%x, %c, %s) ({{
      ^bb0(%bx: {F}, %bc: {COL}, %bs: f32):
        %b = "block.broadcast"(%bc) : ({COL}) -> {F}
        %m = "block.sub"(%bx, %b) : ({F}, {F}) -> {F}
        %e = "block.exp"(%m) : ({F}) -> {F}
        %t = "block.mul"(%bs, %e) : (f32, {F}) -> {F}
        "block.yield"(%e, %t) : ({F}, {F}) -> ()
      }}) {{loc = "k.py:9:13"}} : ({F}, {COL}, f32) -> ({F}, {F})
      "tilegrid.print"(%f#0) <{{label = "e"}}> : ({F}) -> ()
      "tilegrid.print"(%f#1) <{{label = "t"}}> : ({F}) -> ()
    """))
    filecheck(out, """
    CHECK:      %[[X:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}>
    CHECK-NEXT: %[[C:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<1>}>
    CHECK-NEXT: %[[S:.*]] = "arith.constant"()
    CHECK-NEXT: %[[E:.*]] = "tilegrid.alloc"() {loc = "k.py:9:13"} : () -> !tilegrid.block<32x32xf32>
    CHECK-NEXT: %[[T:.*]] = "tilegrid.alloc"() {loc = "k.py:9:13"} : () -> !tilegrid.block<32x32xf32>
    CHECK-NEXT: "tile.compute"(%[[X]], %[[C]], %[[S]], %[[E]], %[[T]]) <{operandSegmentSizes = array<i32: 2, 1, 2>}> ({
    CHECK-NEXT: ^bb{{[0-9]+}}(%[[BS:.*]]: f32):
    CHECK-NEXT: %[[LC:.*]] = "tile.load"() <{input = #builtin.int<1>, bcast = "col"}> : () -> !tile.dst
    CHECK-NEXT: %[[LX:.*]] = "tile.load"() <{input = #builtin.int<0>, bcast = "none"}> : () -> !tile.dst
    CHECK-NEXT: %[[M:.*]] = "tile.sub"(%[[LX]], %[[LC]])
    CHECK-NEXT: %[[EXP:.*]] = "tile.exp"(%[[M]])
    CHECK-NEXT: "tile.pack"(%[[EXP]]) <{output = #builtin.int<0>}>
    CHECK-NEXT: %[[SC:.*]] = "tile.mul"(%[[BS]], %[[EXP]])
    CHECK-NEXT: "tile.pack"(%[[SC]]) <{output = #builtin.int<1>}>
    CHECK-NEXT: }) {loc = "k.py:9:13"}
    CHECK-NEXT: "tilegrid.print"(%[[E]]) <{label = "e"}>
    CHECK-NEXT: "tilegrid.print"(%[[T]]) <{label = "t"}>
    CHECK-NOT:  "block.
    """)


# A [1,N] input is loaded with a `row` broadcast, a [1,1] input with a `scalar` broadcast;
# fill, iota and where have tile twins.
def test_row_and_scalar_broadcast_fill_iota_where():
    out = run_pass(LowerToTile(), compute(f"""
      %r = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {ROW}
      %o = "tilegrid.cb_wait"() <{{cb = #builtin.int<1>}}> : () -> {ONE}
      %f = "block.fused"(%r, %o) ({{
      ^bb0(%br: {ROW}, %bo: {ONE}):
        %wr = "block.broadcast"(%br) : ({ROW}) -> {F}
        %wo = "block.broadcast"(%bo) : ({ONE}) -> {F}
        %i = "block.iota"() <{{dim = #builtin.int<0>}}> : () -> {F}
        %z = "block.fill"() <{{value = 0.000000e+00 : f32}}> : () -> {F}
        %w = "block.where"(%i, %wr, %z) : ({F}, {F}, {F}) -> {F}
        %y = "block.add"(%w, %wo) : ({F}, {F}) -> {F}
        "block.yield"(%y) : ({F}) -> ()
      }}) : ({ROW}, {ONE}) -> {F}
      "tilegrid.print"(%f) <{{label = "f"}}> : ({F}) -> ()
    """))
    filecheck(out, """
    CHECK:      "tile.compute"
    CHECK-NEXT: %[[WR:.*]] = "tile.load"() <{input = #builtin.int<0>, bcast = "row"}>
    CHECK-NEXT: %[[WO:.*]] = "tile.load"() <{input = #builtin.int<1>, bcast = "scalar"}>
    CHECK-NEXT: %[[I:.*]] = "tile.iota"() <{dim = #builtin.int<0>}>
    CHECK-NEXT: %[[Z:.*]] = "tile.fill"() <{value = 0.000000e+00 : f32}>
    CHECK-NEXT: %[[W:.*]] = "tile.where"(%[[I]], %[[WR]], %[[Z]])
    CHECK-NEXT: %[[Y:.*]] = "tile.add"(%[[W]], %[[WO]])
    CHECK-NEXT: "tile.pack"(%[[Y]]) <{output = #builtin.int<0>}>
    CHECK-NEXT: })
    """)


# A `copy` is no DST op (the value stays in its tile), and an input yielded unchanged is packed
# from its one load.
def test_copy_and_passthrough_outputs():
    out = run_pass(LowerToTile(), compute(f"""
      %x = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {BF}
      %f:2 = "block.fused"(%x) ({{
      ^bb0(%bx: {BF}):
        %c = "block.copy"(%bx) : ({BF}) -> {BF}
        "block.yield"(%c, %bx) : ({BF}, {BF}) -> ()
      }}) : ({BF}) -> ({BF}, {BF})
      "tilegrid.print"(%f#0) <{{label = "c"}}> : ({BF}) -> ()
      "tilegrid.print"(%f#1) <{{label = "x"}}> : ({BF}) -> ()
    """))
    filecheck(out, """
    CHECK:      "tile.compute"
    CHECK-NEXT: %[[L:.*]] = "tile.load"() <{input = #builtin.int<0>, bcast = "none"}>
    CHECK-NEXT: "tile.pack"(%[[L]]) <{output = #builtin.int<0>}>
    CHECK-NEXT: "tile.pack"(%[[L]]) <{output = #builtin.int<1>}>
    CHECK-NEXT: })
    """)


# block.matmul / reduce / transpose -> an alloc for the result and the tile op writing it (no acc).
def test_matmul_reduce_transpose():
    out = run_pass(LowerToTile(), compute(f"""
      %a = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {BF}
      %t = "block.transpose"(%a) {{loc = "k.py:5:13"}} : ({BF}) -> {BF}
      %m = "block.matmul"(%t, %a) {{loc = "k.py:6:13"}} : ({BF}, {BF}) -> {BF}
      %r = "block.reduce"(%m) <{{kind = "max", dim = #builtin.int<1>}}> {{loc = "k.py:7:13"}} : ({BF}) -> !tilegrid.block<32x1xbf16>
      "tilegrid.print"(%r) <{{label = "r"}}> : (!tilegrid.block<32x1xbf16>) -> ()
    """))
    filecheck(out, """
    CHECK:      %[[A:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}>
    CHECK-NEXT: %[[T:.*]] = "tilegrid.alloc"() {loc = "k.py:5:13"} : () -> !tilegrid.block<32x32xbf16>
    CHECK-NEXT: "tile.transpose"(%[[A]], %[[T]]) {loc = "k.py:5:13"}
    CHECK-NEXT: %[[M:.*]] = "tilegrid.alloc"() {loc = "k.py:6:13"} : () -> !tilegrid.block<32x32xbf16>
    CHECK-NEXT: "tile.matmul"(%[[T]], %[[A]], %[[M]]) <{operandSegmentSizes = array<i32: 1, 1, 0, 1>}> {loc = "k.py:6:13"}
    CHECK-NEXT: %[[R:.*]] = "tilegrid.alloc"() {loc = "k.py:7:13"} : () -> !tilegrid.block<32x1xbf16>
    CHECK-NEXT: "tile.reduce"(%[[M]], %[[R]]) <{kind = "max", dim = #builtin.int<1>}> {loc = "k.py:7:13"}
    CHECK-NEXT: "tilegrid.print"(%[[R]])
    CHECK-NOT:  "block.
    """)


# A stored value whose producer is no tile op (here a CB block) is copied into the slot by a
# load / pack tile.compute, rounding to the slot's format; no buffer.
def test_store_copies_into_slot():
    out = run_pass(LowerToTile(), compute(f"""
      %v = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {F}
      %o = "tilegrid.cb_reserve"() <{{cb = #builtin.int<1>}}> : () -> {BF}
      "block.store"(%o, %v) {{loc = "k.py:8:9"}} : ({BF}, {F}) -> ()
      "tilegrid.cb_push"() <{{cb = #builtin.int<1>}}> : () -> ()
    """))
    filecheck(out, """
    CHECK:      %[[V:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}>
    CHECK-NEXT: %[[O:.*]] = "tilegrid.cb_reserve"() <{cb = #builtin.int<1>}>
    CHECK-NEXT: "tile.compute"(%[[V]], %[[O]]) <{operandSegmentSizes = array<i32: 1, 0, 1>}> ({
    CHECK-NEXT: %[[L:.*]] = "tile.load"() <{input = #builtin.int<0>, bcast = "none"}>
    CHECK-NEXT: "tile.pack"(%[[L]]) <{output = #builtin.int<0>}>
    CHECK-NEXT: }) {loc = "k.py:8:9"} : (!tilegrid.block<32x32xf32>, !tilegrid.block<32x32xbf16>) -> ()
    CHECK-NEXT: "tilegrid.cb_push"
    CHECK-NOT:  "tilegrid.alloc"
    """)


# `acc + a @ b` alone in a fused group, the product used nowhere else: one tile.matmul that starts
# its DST accumulators from `acc` (no product buffer, no tile.compute).
def test_matmul_with_acc_becomes_tile_matmul_with_acc():
    out = run_pass(LowerToTile(), compute(f"""
      %a = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {BF}
      %acc = "tilegrid.cb_wait"() <{{cb = #builtin.int<1>}}> : () -> {F}
      %m = "block.matmul"(%a, %a, %acc) {{loc = "k.py:6:13"}} : ({BF}, {BF}, {F}) -> {F}
      %c = "tilegrid.cb_wait"() <{{cb = #builtin.int<2>}}> : () -> {COL}
      %r = "block.reduce"(%m, %c) <{{kind = "sum", dim = #builtin.int<1>}}> : ({F}, {COL}) -> {COL}
      "tilegrid.print"(%r) <{{label = "r"}}> : ({COL}) -> ()
    """))
    filecheck(out, """
    CHECK:      %[[A:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}>
    CHECK-NEXT: %[[ACC:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<1>}>
    CHECK-NEXT: %[[OUT:.*]] = "tilegrid.alloc"() {loc = "k.py:6:13"} : () -> !tilegrid.block<32x32xf32>
    CHECK-NEXT: "tile.matmul"(%[[A]], %[[A]], %[[ACC]], %[[OUT]]) <{operandSegmentSizes = array<i32: 1, 1, 1, 1>}>
    CHECK-NEXT: %[[C:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<2>}>
    CHECK-NEXT: %[[R:.*]] = "tilegrid.alloc"()
    CHECK-NEXT: "tile.reduce"(%[[OUT]], %[[C]], %[[R]]) <{kind = "sum", dim = #builtin.int<1>}>
    CHECK-NOT:  "tile.compute"
    """)


# A transpose read by a matmul after a CB release is not absorbed into the matmul (which would
# then read the released slot where the matmul stands): it is lowered where it is.
def test_transpose_not_absorbed_across_a_pop():
    out = run_pass(LowerToTile(), compute(f"""
      %a = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {BF}
      %b = "tilegrid.cb_wait"() <{{cb = #builtin.int<1>}}> : () -> {BF}
      %t = "block.transpose"(%b) : ({BF}) -> {BF}
      "tilegrid.cb_pop"() <{{cb = #builtin.int<1>}}> : () -> ()
      %m = "block.matmul"(%a, %t) : ({BF}, {BF}) -> {BF}
      "tilegrid.print"(%m) <{{label = "m"}}> : ({BF}) -> ()
    """))
    filecheck(out, """
    CHECK:      "tile.transpose"(%{{[a-z0-9_]+}}, %[[T:[a-z0-9_]+]])
    CHECK-NEXT: "tilegrid.cb_pop"() <{cb = #builtin.int<1>}>
    CHECK:      "tile.matmul"(%{{[a-z0-9_]+}}, %[[T]], %{{[a-z0-9_]+}}) <{operandSegmentSizes
    """)


# `x.transpose() @ x.transpose()`: the right operand's transpose is absorbed, the left one's is
# lowered (the two are different ops on the same block).
def test_both_operands_transposed():
    out = run_pass(LowerToTile(), compute(f"""
      %a = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {BF}
      %t1 = "block.transpose"(%a) : ({BF}) -> {BF}
      %t2 = "block.transpose"(%a) : ({BF}) -> {BF}
      %m = "block.matmul"(%t1, %t2) : ({BF}, {BF}) -> {BF}
      "tilegrid.print"(%m) <{{label = "m"}}> : ({BF}) -> ()
    """))
    filecheck(out, """
    CHECK:      %[[A:.*]] = "tilegrid.cb_wait"()
    CHECK-NEXT: %[[T1:.*]] = "tilegrid.alloc"()
    CHECK-NEXT: "tile.transpose"(%[[A]], %[[T1]])
    CHECK:      "tile.matmul"(%[[T1]], %[[A]], %[[M:.*]]) <{transpose_b = #builtin.int<1>
    CHECK-NOT:  "block.
    """)


# A [M,1] column stored into a full slot is broadcast by the copy (a `col` load).
def test_store_broadcasts_column():
    out = run_pass(LowerToTile(), compute(f"""
      %c = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {COL}
      %o = "tilegrid.cb_reserve"() <{{cb = #builtin.int<1>}}> : () -> {BF}
      "block.store"(%o, %c) : ({BF}, {COL}) -> ()
    """))
    filecheck(out, """
    CHECK:      "tile.compute"(%[[C:.*]], %[[O:.*]]) <{operandSegmentSizes = array<i32: 1, 0, 1>}> ({
    CHECK-NEXT: %[[L:.*]] = "tile.load"() <{input = #builtin.int<0>, bcast = "col"}>
    CHECK-NEXT: "tile.pack"(%[[L]]) <{output = #builtin.int<0>}>
    """)


# A stored value used nowhere else is written straight into the CB slot by its producer, which
# moves down to the store: no buffer, no copy.
def test_store_forwards_into_slot():
    out = run_pass(LowerToTile(), compute(f"""
      %x = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {F}
      %f = "block.fused"(%x) ({{
      ^bb0(%bx: {F}):
        %e = "block.exp"(%bx) : ({F}) -> {F}
        "block.yield"(%e) : ({F}) -> ()
      }}) {{loc = "k.py:6:13"}} : ({F}) -> {F}
      %o = "tilegrid.cb_reserve"() <{{cb = #builtin.int<1>}}> : () -> {BF}
      "block.store"(%o, %f) {{loc = "k.py:8:9"}} : ({BF}, {F}) -> ()
      "tilegrid.cb_push"() <{{cb = #builtin.int<1>}}> : () -> ()
    """))
    filecheck(out, """
    CHECK:      %[[X:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}>
    CHECK-NEXT: %[[O:.*]] = "tilegrid.cb_reserve"() <{cb = #builtin.int<1>}>
    CHECK-NEXT: "tile.compute"(%[[X]], %[[O]]) <{operandSegmentSizes = array<i32: 1, 0, 1>}> ({
    CHECK-NEXT: %[[L:.*]] = "tile.load"() <{input = #builtin.int<0>, bcast = "none"}>
    CHECK-NEXT: %[[E:.*]] = "tile.exp"(%[[L]])
    CHECK-NEXT: "tile.pack"(%[[E]]) <{output = #builtin.int<0>}>
    CHECK-NEXT: }) {loc = "k.py:6:13"}
    CHECK-NEXT: "tilegrid.cb_push"
    CHECK-NOT:  "tilegrid.alloc"
    """)


# The producer cannot move down past a CB pop (it would read a released slot): it writes a buffer
# where it is, and the store copies the buffer into the slot.
def test_store_does_not_forward_across_pop():
    out = run_pass(LowerToTile(), compute(f"""
      %x = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {F}
      %f = "block.fused"(%x) ({{
      ^bb0(%bx: {F}):
        %e = "block.exp"(%bx) : ({F}) -> {F}
        "block.yield"(%e) : ({F}) -> ()
      }}) {{loc = "k.py:6:13"}} : ({F}) -> {F}
      "tilegrid.cb_pop"() <{{cb = #builtin.int<0>}}> : () -> ()
      %o = "tilegrid.cb_reserve"() <{{cb = #builtin.int<1>}}> : () -> {BF}
      "block.store"(%o, %f) {{loc = "k.py:8:9"}} : ({BF}, {F}) -> ()
    """))
    filecheck(out, """
    CHECK:      %[[X:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}>
    CHECK-NEXT: %[[B:.*]] = "tilegrid.alloc"() {loc = "k.py:6:13"} : () -> !tilegrid.block<32x32xf32>
    CHECK-NEXT: "tile.compute"(%[[X]], %[[B]])
    CHECK:      }) {loc = "k.py:6:13"}
    CHECK-NEXT: "tilegrid.cb_pop"() <{cb = #builtin.int<0>}>
    CHECK-NEXT: %[[O:.*]] = "tilegrid.cb_reserve"() <{cb = #builtin.int<1>}>
    CHECK-NEXT: "tile.compute"(%[[B]], %[[O]])
    CHECK-NEXT: "tile.load"() <{input = #builtin.int<0>, bcast = "none"}>
    CHECK-NEXT: "tile.pack"
    CHECK-NEXT: }) {loc = "k.py:8:9"}
    """)


# `a @ b.transpose()` with the transpose used nowhere else: the matmul unpacks b transposed
# (transpose_b) and no transposed copy of b is made.
def test_matmul_of_transpose_unpacks_transposed():
    out = run_pass(LowerToTile(), compute(f"""
      %a = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {BF}
      %b = "tilegrid.cb_wait"() <{{cb = #builtin.int<1>}}> : () -> {BF}
      %t = "block.transpose"(%b) {{loc = "k.py:6:28"}} : ({BF}) -> {BF}
      %m = "block.matmul"(%a, %t) {{loc = "k.py:6:13"}} : ({BF}, {BF}) -> {BF}
      "tilegrid.print"(%m) <{{label = "m"}}> : ({BF}) -> ()
    """))
    filecheck(out, """
    CHECK:      %[[A:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}>
    CHECK-NEXT: %[[B:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<1>}>
    CHECK-NEXT: %[[M:.*]] = "tilegrid.alloc"() {loc = "k.py:6:13"}
    CHECK-NEXT: "tile.matmul"(%[[A]], %[[B]], %[[M]]) <{transpose_b = #builtin.int<1>, operandSegmentSizes = array<i32: 1, 1, 0, 1>}>
    CHECK-NEXT: "tilegrid.print"(%[[M]])
    CHECK-NOT:  "tile.transpose"
    """)


# Loop-carried blocks become loop-carried buffers: the init value and the yielded value are allocs.
def test_loop_carried_values_become_buffers():
    out = run_pass(LowerToTile(), compute(f"""
      %x = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {F}
      %lb = "arith.constant"() <{{value = 0 : index}}> : () -> index
      %ub = "arith.constant"() <{{value = 2 : index}}> : () -> index
      %st = "arith.constant"() <{{value = 1 : index}}> : () -> index
      %init = "block.transpose"(%x) : ({F}) -> {F}
      %r = "scf.for"(%lb, %ub, %st, %init) ({{
      ^bb0(%i: index, %acc: {F}):
        %n = "block.matmul"(%acc, %x) : ({F}, {F}) -> {F}
        "scf.yield"(%n) : ({F}) -> ()
      }}) : (index, index, index, {F}) -> {F}
      "tilegrid.print"(%r) <{{label = "r"}}> : ({F}) -> ()
    """))
    filecheck(out, """
    CHECK:      %[[INIT:.*]] = "tilegrid.alloc"()
    CHECK-NEXT: "tile.transpose"(%[[X:.*]], %[[INIT]])
    CHECK-NEXT: %[[R:.*]] = "scf.for"(%{{.*}}, %{{.*}}, %{{.*}}, %[[INIT]]) ({
    CHECK-NEXT: ^bb{{[0-9]+}}(%{{.*}}: index, %[[ACC:.*]]: !tilegrid.block<32x32xf32>):
    CHECK-NEXT: %[[N:.*]] = "tilegrid.alloc"()
    CHECK-NEXT: "tile.matmul"(%[[ACC]], %[[X]], %[[N]])
    CHECK-NEXT: "scf.yield"(%[[N]])
    """)


# Only elementwise ops may be fused; anything else inside block.fused is an internal error.
def test_non_elementwise_in_fused_is_an_error():
    with pytest.raises(CompileError) as e:
        apply_pass(LowerToTile(), compute(f"""
      %x = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {F}
      %f = "block.fused"(%x) ({{
      ^bb0(%bx: {F}):
        %m = "block.matmul"(%bx, %bx) {{loc = "k.py:6:13"}} : ({F}, {F}) -> {F}
        "block.yield"(%m) : ({F}) -> ()
      }}) : ({F}) -> {F}
    """))
    assert e.value.message == "internal: block.matmul cannot be fused"
    assert str(e.value.loc) == "k.py:6:13"
