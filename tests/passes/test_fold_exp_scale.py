"""fold-exp-scale: `exp(x * s)` with a scalar `s` (used nowhere else) becomes one exp with a scale."""

from irtext import filecheck, program, run_pass

from tilegrid.passes.fold_exp_scale import FoldExpScale

F = "!tilegrid.block<32x32xf32>"


def compute(body: str) -> str:
    return program('    "tilegrid.thread"() <{kind = "compute", name = "comp"}> ({\n' + body + "\n    }) : () -> ()")


# The product disappears; the exp takes the block and the scalar, and keeps its own location.
def test_exp_of_scaled_block_takes_the_scale():
    out = run_pass(FoldExpScale(), compute(f"""
      %x = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {F}
      %s = "arith.constant"() <{{value = 1.250000e-01 : f32}}> : () -> f32
      %m = "block.mul"(%s, %x) : (f32, {F}) -> {F}
      %e = "block.exp_approx"(%m) {{loc = "k.py:7:9"}} : ({F}) -> {F}
      "tilegrid.print"(%e) <{{label = "e"}}> : ({F}) -> ()
    """))
    filecheck(out, """
    CHECK:      %[[X:.*]] = "tilegrid.cb_wait"()
    CHECK-NEXT: %[[S:.*]] = "arith.constant"()
    CHECK-NEXT: %[[E:.*]] = "block.exp_approx"(%[[X]], %[[S]]) {loc = "k.py:7:9"}
    CHECK-NEXT: "tilegrid.print"(%[[E]])
    CHECK-NOT:  "block.mul"
    """)


# A product used elsewhere too, a product of two blocks, and a non-scalable op stay as they are.
def test_left_alone_when_the_product_is_needed_or_not_a_scale():
    text = compute(f"""
      %x = "tilegrid.cb_wait"() <{{cb = #builtin.int<0>}}> : () -> {F}
      %s = "arith.constant"() <{{value = 1.250000e-01 : f32}}> : () -> f32
      %m = "block.mul"(%x, %s) : ({F}, f32) -> {F}
      %e = "block.exp"(%m) : ({F}) -> {F}
      "tilegrid.print"(%m) <{{label = "m"}}> : ({F}) -> ()
      %b = "block.mul"(%x, %x) : ({F}, {F}) -> {F}
      %f = "block.exp"(%b) : ({F}) -> {F}
      %t = "block.mul"(%x, %s) : ({F}, f32) -> {F}
      %g = "block.tanh"(%t) : ({F}) -> {F}
      "tilegrid.print"(%e) <{{label = "e"}}> : ({F}) -> ()
      "tilegrid.print"(%f) <{{label = "f"}}> : ({F}) -> ()
      "tilegrid.print"(%g) <{{label = "g"}}> : ({F}) -> ()
    """)
    out = run_pass(FoldExpScale(), text)
    filecheck(out, """
    CHECK:      %[[M:.*]] = "block.mul"
    CHECK-NEXT: "block.exp"(%[[M]])
    CHECK:      %[[B:.*]] = "block.mul"
    CHECK-NEXT: "block.exp"(%[[B]])
    CHECK:      %[[T:.*]] = "block.mul"
    CHECK-NEXT: "block.tanh"(%[[T]])
    """)
