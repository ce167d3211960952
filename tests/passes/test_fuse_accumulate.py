"""fuse-accumulate: `acc + a @ b` and `acc + rowsum(x)` become one matmul / reduce with `acc`."""

from irtext import filecheck, program, run_pass

from tilegrid.passes.fuse_accumulate import FuseAccumulate

BF = "!tilegrid.block<32x32xbf16>"
F = "!tilegrid.block<32x32xf32>"
COL = "!tilegrid.block<32x1xf32>"


def compute(body: str) -> str:
    return program('    "tilegrid.thread"() <{kind = "compute", name = "comp"}> ({\n' + body + "\n    }) : () -> ()")


# FlashAttention's `c * O + P @ V` and `c * l + rowsum(P)`: the add is gone, the producer takes the
# accumulator and stands where the add stood (after the accumulator's definition).
def test_matmul_and_row_sum_accumulate():
    out = run_pass(FuseAccumulate(), compute(f"""
      %p = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {BF}
      %o = "tilegrid.cb_wait"() <{{cb = #builtin.int<1>}}> : () -> {F}
      %l = "tilegrid.cb_wait"() <{{cb = #builtin.int<2>}}> : () -> {COL}
      %pv = "block.matmul"(%p, %p) {{loc = "k.py:9:9"}} : ({BF}, {BF}) -> {BF}
      %r = "block.reduce"(%p) <{{kind = "sum", dim = #builtin.int<1>}}> : ({BF}) -> {COL}
      %co = "block.mul"(%o, %o) : ({F}, {F}) -> {F}
      %on = "block.add"(%co, %pv) : ({F}, {BF}) -> {F}
      %ln = "block.add"(%r, %l) : ({COL}, {COL}) -> {COL}
      "tilegrid.print"(%on) <{{label = "o"}}> : ({F}) -> ()
      "tilegrid.print"(%ln) <{{label = "l"}}> : ({COL}) -> ()
    """))
    filecheck(out, """
    CHECK:      %[[P:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<0>}>
    CHECK-NEXT: %[[O:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<1>}>
    CHECK-NEXT: %[[L:.*]] = "tilegrid.cb_wait"() <{cb = #builtin.int<2>}>
    CHECK-NEXT: %[[CO:.*]] = "block.mul"(%[[O]], %[[O]])
    CHECK-NEXT: %[[ON:.*]] = "block.matmul"(%[[P]], %[[P]], %[[CO]]) {loc = "k.py:9:9"} : (!tilegrid.block<32x32xbf16>, !tilegrid.block<32x32xbf16>, !tilegrid.block<32x32xf32>) -> !tilegrid.block<32x32xf32>
    CHECK-NEXT: %[[LN:.*]] = "block.reduce"(%[[P]], %[[L]]) <{kind = "sum", dim = #builtin.int<1>}>
    CHECK-NEXT: "tilegrid.print"(%[[ON]])
    CHECK-NEXT: "tilegrid.print"(%[[LN]])
    CHECK-NOT:  "block.add"
    """)


# Not fused: a product used twice (`p + p`), a broadcast accumulator, a row max (not a sum), and a
# product whose operand's slot is released before the add (the matmul would move past the pop).
def test_left_alone():
    out = run_pass(FuseAccumulate(), compute(f"""
      %a = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {BF}
      %c = "tilegrid.cb_wait"() <{{cb = #builtin.int<1>}}> : () -> {COL}
      %p = "block.matmul"(%a, %a) : ({BF}, {BF}) -> {BF}
      %pp = "block.add"(%p, %p) : ({BF}, {BF}) -> {BF}
      %q = "block.matmul"(%a, %a) : ({BF}, {BF}) -> {BF}
      %cb = "block.broadcast"(%c) : ({COL}) -> {F}
      %qc = "block.add"(%cb, %q) : ({F}, {BF}) -> {F}
      %m = "block.reduce"(%a) <{{kind = "max", dim = #builtin.int<1>}}> : ({BF}) -> !tilegrid.block<32x1xbf16>
      %mc = "block.add"(%m, %c) : (!tilegrid.block<32x1xbf16>, {COL}) -> {COL}
      %x = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {BF}
      %xx = "block.matmul"(%x, %x) : ({BF}, {BF}) -> {BF}
      "tilegrid.cb_pop"() <{{cb = #builtin.int<0>}}> : () -> ()
      %s = "block.add"(%pp, %xx) : ({BF}, {BF}) -> {BF}
      "tilegrid.print"(%qc) <{{label = "qc"}}> : ({F}) -> ()
      "tilegrid.print"(%mc) <{{label = "mc"}}> : ({COL}) -> ()
      "tilegrid.print"(%s) <{{label = "s"}}> : ({BF}) -> ()
    """))
    filecheck(out, """
    CHECK: %[[PP:.*]] = "block.add"(%[[P:.*]], %[[P]])
    CHECK: %[[QC:.*]] = "block.add"(%[[CB:.*]], %[[Q:.*]])
    CHECK: %[[MC:.*]] = "block.add"(%[[M:.*]], %[[C:.*]])
    CHECK: "tilegrid.cb_pop"
    CHECK-NEXT: %[[S:.*]] = "block.add"
    """)
