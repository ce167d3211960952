"""infer-shapes: explicit `block.broadcast` for [M,1] / [1,N] operands; every block op's type checked."""

import pytest
from irtext import apply_pass, filecheck, program, run_pass

from tilegrid.errors import CompileError
from tilegrid.passes.infer_shapes import InferShapes


def compute(body: str) -> str:
    return program('    "tilegrid.thread"() <{kind = "compute", name = "comp"}> ({\n' + body + "\n    }) : () -> ()")


# A [M,1] column operand is widened to the result shape right before its use; the broadcast keeps
# the column's data format (bf16) and the user's location, and replaces only that operand.
def test_column_operand_is_broadcast():
    out = run_pass(InferShapes(), compute("""
      %x = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}> : () -> !tilegrid.block<32x64xf32>
      %c = "tilegrid.cb_wait"() <{cb = #builtin.int<1>}> : () -> !tilegrid.block<32x1xbf16>
      %y = "block.sub"(%x, %c) {loc = "k.py:7:9"} : (!tilegrid.block<32x64xf32>, !tilegrid.block<32x1xbf16>) -> !tilegrid.block<32x64xf32>
    """))
    filecheck(out, """
    CHECK:      %[[X:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}>
    CHECK-NEXT: %[[C:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<1>}>
    CHECK-NEXT: %[[B:.*]] = "block.broadcast"(%[[C]]) {loc = "k.py:7:9"} : (!tilegrid.block<32x1xbf16>) -> !tilegrid.block<32x64xbf16>
    CHECK-NEXT: "block.sub"(%[[X]], %[[B]]) {loc = "k.py:7:9"} : (!tilegrid.block<32x64xf32>, !tilegrid.block<32x64xbf16>) -> !tilegrid.block<32x64xf32>
    """)


# A [1,N] row operand on the left is widened the same way.
def test_row_operand_is_broadcast():
    out = run_pass(InferShapes(), compute("""
      %r = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}> : () -> !tilegrid.block<1x64xf32>
      %x = "tilegrid.cb_wait"() <{cb = #builtin.int<1>}> : () -> !tilegrid.block<32x64xf32>
      %y = "block.mul"(%r, %x) : (!tilegrid.block<1x64xf32>, !tilegrid.block<32x64xf32>) -> !tilegrid.block<32x64xf32>
    """))
    filecheck(out, """
    CHECK:      %[[R:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}>
    CHECK-NEXT: %[[X:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<1>}>
    CHECK-NEXT: %[[B:.*]] = "block.broadcast"(%[[R]]) : (!tilegrid.block<1x64xf32>) -> !tilegrid.block<32x64xf32>
    CHECK-NEXT: "block.mul"(%[[B]], %[[X]]) : (!tilegrid.block<32x64xf32>, !tilegrid.block<32x64xf32>)
    """)


# A column and a row make an outer product: both are broadcast, in operand order.
def test_column_and_row_are_both_broadcast():
    out = run_pass(InferShapes(), compute("""
      %c = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}> : () -> !tilegrid.block<32x1xf32>
      %r = "tilegrid.cb_wait"() <{cb = #builtin.int<1>}> : () -> !tilegrid.block<1x64xf32>
      %y = "block.add"(%c, %r) : (!tilegrid.block<32x1xf32>, !tilegrid.block<1x64xf32>) -> !tilegrid.block<32x64xf32>
    """))
    filecheck(out, """
    CHECK:      %[[C:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}>
    CHECK-NEXT: %[[R:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<1>}>
    CHECK-NEXT: %[[BC:.*]] = "block.broadcast"(%[[C]]) : (!tilegrid.block<32x1xf32>) -> !tilegrid.block<32x64xf32>
    CHECK-NEXT: %[[BR:.*]] = "block.broadcast"(%[[R]]) : (!tilegrid.block<1x64xf32>) -> !tilegrid.block<32x64xf32>
    CHECK-NEXT: "block.add"(%[[BC]], %[[BR]])
    """)


# block.where broadcasts any of its three operands (here the [M,1] condition).
def test_where_condition_is_broadcast():
    out = run_pass(InferShapes(), compute("""
      %m = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}> : () -> !tilegrid.block<32x1xf32>
      %a = "tilegrid.cb_wait"() <{cb = #builtin.int<1>}> : () -> !tilegrid.block<32x64xf32>
      %y = "block.where"(%m, %a, %a) : (!tilegrid.block<32x1xf32>, !tilegrid.block<32x64xf32>, !tilegrid.block<32x64xf32>) -> !tilegrid.block<32x64xf32>
    """))
    filecheck(out, """
    CHECK:      %[[M:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}>
    CHECK-NEXT: %[[A:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<1>}>
    CHECK-NEXT: %[[B:.*]] = "block.broadcast"(%[[M]]) : (!tilegrid.block<32x1xf32>) -> !tilegrid.block<32x64xf32>
    CHECK-NEXT: "block.where"(%[[B]], %[[A]], %[[A]])
    CHECK-NOT:  block.broadcast
    """)


# Operands that already have the result's shape are left alone, inside loops too.
def test_equal_shapes_unchanged():
    out = run_pass(InferShapes(), compute("""
      %x = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}> : () -> !tilegrid.block<32x1xf32>
      %lb = "arith.constant"() <{value = 0 : index}> : () -> index
      %ub = "arith.constant"() <{value = 2 : index}> : () -> index
      %st = "arith.constant"() <{value = 1 : index}> : () -> index
      "scf.for"(%lb, %ub, %st) ({
      ^bb0(%i: index):
        %y = "block.add"(%x, %x) : (!tilegrid.block<32x1xf32>, !tilegrid.block<32x1xf32>) -> !tilegrid.block<32x1xf32>
        "scf.yield"() : () -> ()
      }) : (index, index, index) -> ()
    """))
    filecheck(out, """
    CHECK-NOT: block.broadcast
    CHECK:     "block.add"(%[[X:.*]], %[[X]]) : (!tilegrid.block<32x1xf32>, !tilegrid.block<32x1xf32>)
    CHECK-NOT: block.broadcast
    """)


# A block op whose operands do not broadcast is a compile error at the user's line.
def test_shapes_that_do_not_broadcast_are_an_error():
    with pytest.raises(CompileError) as e:
        apply_pass(InferShapes(), compute("""
      %a = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}> : () -> !tilegrid.block<32x64xf32>
      %b = "tilegrid.cb_wait"() <{cb = #builtin.int<1>}> : () -> !tilegrid.block<64x32xf32>
      %y = "block.add"(%a, %b) {loc = "k.py:7:9"} : (!tilegrid.block<32x64xf32>, !tilegrid.block<64x32xf32>) -> !tilegrid.block<32x64xf32>
    """))
    assert e.value.message == (
        "block.add: shapes !tilegrid.block<32x64xf32> and !tilegrid.block<64x32xf32> do not broadcast"
    )
    assert str(e.value.loc) == "k.py:7:9"


# A result type that disagrees with the one inferred from the operands is a compile error.
def test_result_type_mismatch_is_an_error():
    with pytest.raises(CompileError) as e:
        apply_pass(InferShapes(), compute("""
      %a = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}> : () -> !tilegrid.block<32x32xf32>
      %y = "block.reduce"(%a) <{kind = "sum", dim = #builtin.int<1>}> {loc = "k.py:8:13"} : (!tilegrid.block<32x32xf32>) -> !tilegrid.block<1x32xf32>
    """))
    assert e.value.message == (
        "block.reduce: result type !tilegrid.block<1x32xf32> does not match inferred !tilegrid.block<32x1xf32>"
    )
    assert str(e.value.loc) == "k.py:8:13"
