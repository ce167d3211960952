"""What every generated tt-metal kernel shares: C++ text with the user's lines as comments, and the
scalar part of a thread (integer and float arithmetic, loops, ifs, core indices).

A `KernelWriter` walks one thread's tile IR and writes C++. It lowers the ops every thread can hold
(arith, scf, `tilegrid.core_index`); the reader/writer and compute writers (dataflow.py, compute.py)
add the ops of their kind by registering rules. Values that are not scalars (CB blocks, buffers)
are the subclass's business: it names them through `block_value` / `bind_block`.
"""

from __future__ import annotations

import contextlib
import linecache
import math
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from xdsl.dialects import arith, scf
from xdsl.dialects.builtin import Float32Type, FloatAttr, IndexType, IntegerAttr
from xdsl.ir import Operation, SSAValue

from tilegrid.errors import CompileError, SourceLoc
from tilegrid.ir import core as C
from tilegrid.ir.core import BlockType
from tilegrid.ops import CMPI_SYMBOLS, FLOAT_OPS, INDEX_OPS
from tilegrid.passes.common import loc_of

FLOAT_SYM = {name: sym for name, (_, sym) in FLOAT_OPS.items()}

# Python's floor division (arith.floordivsi), for a C++ kernel.
FLOORDIV = """inline int32_t floordiv(int32_t a, int32_t b) {
    const int32_t q = a / b;
    return (q * b != a && ((a < 0) != (b < 0))) ? q - 1 : q;
}"""


def cpp_float(v: float) -> str:
    if math.isnan(v):
        return "__builtin_nanf(\"\")"
    if math.isinf(v):
        return "__builtin_inff()" if v > 0 else "(-__builtin_inff())"
    return f"{float(v)!r}f"


def user_line(loc: str | None) -> str | None:
    """`file.py:28: <the source line>` for a location, or None."""
    where = SourceLoc.parse(loc) if loc else None
    if where is None:
        return None
    text = linecache.getline(where.file, where.line).strip()
    name = where.file.rsplit("/", 1)[-1]
    return f"{name}:{where.line}: {text}" if text else f"{name}:{where.line}"


def _int(text: str) -> int | None:
    """The value of an integer literal (as `bind` wrote it), or None."""
    t = text[1:-1] if text.startswith("(") and text.endswith(")") else text
    return int(t) if t.lstrip("-").isdigit() else None


def _lit(v: int | bool) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v) if v >= 0 else f"({v})"


def user_loc(op: Operation) -> str | None:
    """The user's line of an op, or of the nearest op around it that has one (a compute body's ops)."""
    while op is not None:
        where = loc_of(op)
        if where:
            return where
        op = op.parent_op()
    return None


def unsupported(op: Operation, what: str, note: str | None = None) -> CompileError:
    """The error for an op or construct this target cannot emit: names the op and the user's line."""
    return CompileError(f"the tt-metal target cannot emit {what} ({op.name})", user_loc(op), note=note)


class KernelWriter:
    """Writes one thread's C++ body. Subclasses add rules (`RULES`) for their kind of ops."""

    RULES: ClassVar[dict[type, Callable[[Any, Any], None]]] = {}

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.indent = 1
        self.names: dict[SSAValue, str] = {}
        self.last_comment: str | None = None
        self.helpers: list[str] = []  # C++ definitions the body needs (emitted before kernel_main)
        self.loops = 0  # C++ loops around the line being written

    # ---- text ------------------------------------------------------------------------------------

    def line(self, text: str) -> None:
        self.lines.append("    " * self.indent + text)

    def comment_for(self, op: Operation) -> None:
        """The user's source line as a comment, once per run of ops from the same line."""
        text = user_line(loc_of(op))
        if text and text != self.last_comment:
            self.line(f"// {text}")
            self.last_comment = text

    @contextlib.contextmanager
    def scope(self, head: str) -> Iterator[None]:
        self.line((head + " {").strip())
        self.indent += 1
        try:
            yield
        finally:
            self.indent -= 1
            self.line("}")

    def source(self, head: list[str], cbs: list[str], prologue: list[str]) -> str:
        """The kernel's C++: `head` (comment, includes), the CB constants, the helpers, then kernel_main:
        the core's row and column (if the body uses them), `prologue`, the body."""
        body = "\n".join(self.lines)
        # every kernel's first two runtime arguments: its core's grid row and column
        core = [f"    const int32_t core_{rc} = get_arg_val<uint32_t>({k});" for k, rc in enumerate("rc")]
        core = [c for c in core if c.split()[2] in body or any(c.split()[2] in p for p in prologue)]
        return "\n".join([*head, "", *cbs, "", *self.helpers,
                          *([""] if self.helpers else []),
                          "void kernel_main() {", *core, *prologue, *self.lines, "}", ""])

    def helper(self, text: str) -> None:
        if text not in self.helpers:
            self.helpers.append(text)

    # ---- values ----------------------------------------------------------------------------------

    def name(self, v: SSAValue) -> str:
        if v not in self.names:
            self.names[v] = f"v{len(self.names)}"
        return self.names[v]

    def bind(self, v: SSAValue, text: str) -> None:
        self.names[v] = text

    @staticmethod
    def ctype(v: SSAValue) -> str:
        t = v.type
        if isinstance(t, IndexType):
            return "int32_t"
        if isinstance(t, Float32Type):
            return "float"
        if hasattr(t, "width") and t.width.data == 1:
            return "bool"
        return "int32_t"

    def define(self, v: SSAValue, expr: str) -> None:
        self.line(f"const {self.ctype(v)} {self.name(v)} = {expr};")

    # ---- walking ---------------------------------------------------------------------------------

    def body(self, ops) -> None:
        for op in ops:
            self.op(op)

    def op(self, op: Operation) -> None:
        for cls in type(op).__mro__:
            rule = self.RULES.get(cls)
            if rule is not None:
                rule(self, op)
                return
        raise unsupported(op, f"the op {op.name} in a {self.kind} thread")

    kind = "kernel"

    # block-typed values crossing scf regions (subclasses that carry blocks override these)
    def carry_block(self, var: str, v: SSAValue, init: SSAValue | None) -> None:
        raise unsupported(v.owner if isinstance(v.owner, Operation) else v.block.parent_op(),
                          f"a block carried through a loop or an if in a {self.kind} thread")

    def block_value(self, v: SSAValue) -> str:
        """The C++ expression that locates block `v` (a carried block's new place)."""
        raise unsupported(v.owner if isinstance(v.owner, Operation) else v.block.parent_op(),
                          f"a block carried through a loop or an if in a {self.kind} thread")


def rule(*classes: type) -> Callable:
    """Register a method as the rule of `classes` on the writer class named by `table`."""

    def deco(fn: Callable) -> Callable:
        fn.__rule_classes__ = classes  # type: ignore[attr-defined]
        return fn

    return deco


def collect_rules(cls: type[KernelWriter]) -> type[KernelWriter]:
    """Class decorator: gather the @rule methods of `cls` (and its bases) into `cls.RULES`."""
    table: dict[type, Callable] = {}
    for klass in reversed(cls.__mro__):
        for fn in vars(klass).values():
            for c in getattr(fn, "__rule_classes__", ()):
                table[c] = fn
    cls.RULES = table
    return cls


@collect_rules
class ScalarWriter(KernelWriter):
    """The scalar ops every thread may hold: arith, scf, core indices."""

    @rule(arith.ConstantOp)
    def _constant(self, op: arith.ConstantOp) -> None:
        v = op.value
        if isinstance(v, FloatAttr):
            self.bind(op.result, cpp_float(v.value.data))
        elif isinstance(v, IntegerAttr):
            val = v.value.data
            if not isinstance(v.type, IndexType) and v.type.width.data == 1:
                self.bind(op.result, "true" if val else "false")
            else:
                self.bind(op.result, str(val) if val >= 0 else f"({val})")
        else:
            raise unsupported(op, f"the constant {v}")

    @rule(*(c for c in arith.Arith.operations if c.name in INDEX_OPS or c.name in FLOAT_SYM))
    def _binary(self, op: Operation) -> None:
        a, b = (self.name(v) for v in op.operands)
        if op.name in FLOAT_SYM:
            self.define(op.results[0], f"{a} {FLOAT_SYM[op.name]} {b}")
            return
        spec = INDEX_OPS[op.name]
        ca, cb = _int(a), _int(b)
        if ca is not None and cb is not None and not (spec.divides and cb == 0):  # folded
            self.bind(op.results[0], _lit(spec.fold(ca, cb)))
            return
        if op.name in ("arith.muli", "arith.addi") and (ca, cb) != (None, None):  # x * 1, x + 0
            unit = 1 if op.name == "arith.muli" else 0
            if cb == unit or ca == unit:
                self.bind(op.results[0], a if cb == unit else b)
                return
        if "floordiv(" in spec.cpp:
            self.helper(FLOORDIV)
        self.define(op.results[0], spec.cpp.format(a=a, b=b))

    @rule(arith.CmpiOp)
    def _cmpi(self, op: arith.CmpiOp) -> None:
        self.define(op.result, f"{self.name(op.lhs)} {CMPI_SYMBOLS[op.predicate.value.data]} {self.name(op.rhs)}")

    @rule(arith.SelectOp)
    def _select(self, op: arith.SelectOp) -> None:
        c, a, b = (self.name(v) for v in op.operands)
        if isinstance(op.result.type, BlockType):
            raise unsupported(op, "a select between blocks")
        self.define(op.result, f"{c} ? {a} : {b}")

    @rule(arith.IndexCastOp)
    def _index_cast(self, op: Operation) -> None:
        self.define(op.results[0], f"static_cast<int32_t>({self.name(op.operands[0])})")

    @rule(arith.SIToFPOp)
    def _sitofp(self, op: Operation) -> None:
        self.define(op.results[0], f"static_cast<float>({self.name(op.operands[0])})")

    @rule(C.CoreIndexOp)
    def _core_index(self, op: C.CoreIndexOp) -> None:
        self.bind(op.result, "core_r" if op.dim.data == 0 else "core_c")

    # ---- structured control flow -----------------------------------------------------------------

    def _carried(self, results, inits, args) -> list[str]:
        """Declare one mutable variable per carried value (scalars; blocks through the subclass)."""
        out = []
        for r, init in zip(results, inits):
            var = f"c{len(self.names)}_{self.name(r)}"
            if isinstance(r.type, BlockType):
                self.carry_block(var, r, init)
            else:
                start = f" = {self.name(init)}" if init is not None else ""
                self.line(f"{self.ctype(r)} {var}{start};")
            out.append(var)
        for a, var in zip(args, out):
            self.bind(a, var)
        for r, var in zip(results, out):
            self.bind(r, var)
        return out

    @rule(scf.ForOp)
    def _for(self, op: scf.ForOp) -> None:
        self.comment_for(op)
        body = op.body.block
        self._carried(list(op.results), list(op.iter_args), list(body.args[1:]))
        lb, ub, step = (self.name(v) for v in (op.lb, op.ub, op.step))
        if not op.iter_args and _int(lb) is not None and _int(ub) is not None and _int(step) is not None \
                and _int(lb) < _int(ub) <= _int(lb) + _int(step):  # one trip: a block with its index bound
            self.bind(body.args[0], lb)  # (every generated name is unique: no scope needed)
            self.loop_body(op)
            return
        iv = self.name(body.args[0])
        with self.scope(f"for (int32_t {iv} = {lb}; {iv} < {ub}; {iv} += {step})"):
            self.loops += 1
            self.loop_body(op)
            self.loops -= 1

    def loop_body(self, op: scf.ForOp) -> None:
        self.body(op.body.block.ops)
        self.last_comment = None

    @rule(scf.IfOp)
    def _if(self, op: scf.IfOp) -> None:
        self.comment_for(op)
        self._carried(list(op.results), [None] * len(op.results), [])
        entry = self.branch_state()
        with self.scope(f"if ({self.name(op.cond)})"):
            self.last_comment = None
            self.body(op.true_region.block.ops)
        if op.false_region.blocks and list(op.false_region.block.ops) != [] and (
                len(op.false_region.block.ops) > 1 or op.results):
            self.restore_branch(entry)  # the else branch starts from the state before the if, not the then's
            with self.scope("else"):
                self.last_comment = None
                self.body(op.false_region.block.ops)
        self.last_comment = None

    def branch_state(self) -> object:
        """What a writer tracks about the engines (see restore_branch)."""
        return None

    def restore_branch(self, state: object) -> None:
        """Back to the tracked state of `branch_state` (an else branch runs where the then branch did not)."""

    @rule(scf.YieldOp)
    def _yield(self, op: scf.YieldOp) -> None:
        parent = op.parent_op()
        targets = list(parent.body.block.args[1:]) if isinstance(parent, scf.ForOp) else list(parent.results)
        values = list(op.operands)
        # read every yielded value before assigning any (a swap of carried values)
        temps = []
        for t, v in zip(targets, values):
            block = isinstance(t.type, BlockType)
            value = self.block_value(v) if block else self.name(v)
            if self.name(t) == value:
                continue
            tmp = f"y{len(self.lines)}_{len(temps)}"
            self.line(f"const {'uint32_t' if block else self.ctype(t)} {tmp} = {value};")
            temps.append((self.name(t), tmp))
        for var, tmp in temps:
            self.line(f"{var} = {tmp};")

    # ---- the CB protocol: each kind of kernel takes ("in": waited, "out": reserved) and gives blocks

    def _take(self, op: Operation, side: str) -> None:
        raise unsupported(op, f"a CB operation in a {self.kind} thread")

    def _give(self, op: Operation, side: str) -> None:
        raise unsupported(op, f"a CB operation in a {self.kind} thread")

    @rule(C.CBWaitOp, C.CBReserveOp)
    def _cb_take(self, op: Operation) -> None:
        self._take(op, "in" if isinstance(op, C.CBWaitOp) else "out")

    @rule(C.CBPopOp, C.CBPushOp)
    def _cb_give(self, op: Operation) -> None:
        self._give(op, "in" if isinstance(op, C.CBPopOp) else "out")

    @rule(C.PrintOp)
    def _print(self, op: C.PrintOp) -> None:
        self.line(f"// print({op.label.data!r}) runs on the simulator only")
