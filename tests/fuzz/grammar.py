"""Random tilegrid kernels, generated from the language's grammar as Python source text.

A hypothesis strategy (`programs()`) draws a *description* of a kernel — its tensors, grid,
block factors, data movement and a compute thread built from the statements and expressions
of docs/language.md — and renders it as the source of a .py file (tilegrid compiles thread
functions from their source, so a kernel must live in a file). `tests/fuzz/oracle.py`
interprets the same description in float64 NumPy; `tests/fuzz/test_random_programs.py`
compares the two.

What a program can contain:
- 1..3 inputs and one output, each bf16 or f32, with its own block factors (32..128 elements a
  side) and CB depth (1 or 2), on a 1x1, 1x2, 2x1 or 2x2 grid;
- data movement: implicit (the core's own shard, row-major), or an explicit @datamovement()
  reader / writer over a `Stream` with `dma(...)`: the core's shard row- or column-major, or
  (inputs only) the same blocks on every core;
- a compute thread of up to two nested `for` loops; inputs are popped at any loop level
  (`x = cb.pop()`, `x = cb.wait()`, `with cb.wait() as x:`), the output is reserved and stored
  at one level (`o = out_cb.reserve(); o.store(e)`, `with out_cb.reserve() as o:`,
  `out_cb.reserve().store(e)`, a store in each branch of an `if`), loops deeper than the output
  reduce into carried accumulators (`acc = acc + a @ b`, `rowmax(e, acc)`, `acc += e`, ...);
- expressions: `+ - * /` on blocks, `[M,1]` / `[1,N]` broadcasts, Python and run-time scalars
  (loop and core indices with `+ - * // %`, `a if cond else b`, carried ints and floats),
  `@`, `.transpose()`, row / column reductions (method, `dim=` / `axis=`, `.max(dim=)` and
  free-function forms with an accumulator), the unary ops on safe domains, `maximum`,
  `minimum`, `where` on exact comparisons, `fill`, `row_index` / `col_index`, `astype`;
- `if` on run-time integer conditions reassigning blocks, with the branch types joined;
- `a, b = e1, e2` (also swapping two carried blocks), `range(start, stop, step)`, constants of
  the kernel function (loop bounds, scalars), module-level helper functions (inlined), and the
  DST modes (`fp32_acc=False`, `dst_double_buffer=False`: other capacities, other fusion).

`invalid_programs()` applies one mutation from `MUTATIONS` to a valid program: a mistake the
language must reject with a TilegridError naming the user's line (see test_random_programs.py).

Known compiler bugs: each entry of KNOWN_BUGS keeps the generator away from one construct
that triggers a known bug (tests/fuzz/test_regressions.py has a minimal kernel for each,
marked xfail). When a bug is fixed, delete its entry here and the fuzzer covers it again.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import strategies as st

BF16, F32 = "bf16", "f32"

# Constructs the generator avoids because they trigger a known bug (name -> regression test).
KNOWN_BUGS: dict[str, str] = {}  # construct -> the regression test of a bug the generator stays away from

FLOATS = (0.5, 0.25, 1.5, 2.0, -1.0, -0.5, 0.75, 3.0, 0.125, -2.0, 1.0)  # exact in bf16
POSITIVE = (0.5, 1.0, 2.0, 0.25, 1.5)
INTS = (1, 2, 3, -1, -2)
UNARY = ("exp", "recip", "sqrt", "rsqrt", "log", "abs", "neg", "relu", "sigmoid", "tanh", "erf", "gelu", "silu",
         "softplus", "log1p", "square")
FREE_UNARY = ("exp", "recip", "sqrt", "rsqrt", "log", "relu", "sigmoid", "tanh")  # also free functions
NEEDS_POSITIVE = ("recip", "sqrt", "rsqrt", "log", "log1p")
EXPORTS = ("Program", "Stream", "col_index", "colmax", "colsum", "compute", "core_index", "datamovement", "dma",
           "exp", "fill", "log", "matmul", "maximum", "minimum", "pykernel_gen", "recip", "relu", "row_index",
           "rowmax", "rowsum", "rsqrt", "sigmoid", "sqrt", "tanh", "transpose", "where")


@dataclass(frozen=True)
class BT:
    """A block's static type: shape in elements and data format."""

    shape: tuple[int, int]
    dtype: str


def join(*dtypes: str) -> str:
    """The data format of an op's result: f32 if any operand is f32, else bf16."""
    return F32 if F32 in dtypes else BF16


def broadcast(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int] | None:
    out = []
    for x, y in zip(a, b):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            return None
    return out[0], out[1]


# ---- expressions ------------------------------------------------------------------------------
# Each node knows its static type `t` (a BT, or "int" / "float" / "cond"), whether its value is
# `exact` (bit-identical in any correct evaluation: inputs, fills, indices, and ops that only move
# or select values — the only operands comparisons get, so a rounding difference never flips one),
# and renders itself as source. tests/fuzz/oracle.py evaluates them.


class Expr:
    t: Any = None
    exact: bool = False
    nonneg: bool = True  # integers: never negative
    runtime: bool = False  # known only at run time (a loop or core index): an `if` on it is a branch
    root: str = ""  # "mm" / "tr": the value is a matmul / transpose (for KNOWN_BUGS)
    trsrc: Any = None  # the value a transpose reads (for KNOWN_BUGS)

    def src(self) -> str:
        raise NotImplementedError

    def kids(self) -> tuple[Expr, ...]:
        return ()

    def names(self) -> set[str]:
        out: set[str] = set()
        stack: list[Expr] = [self]
        while stack:
            e = stack.pop()
            if isinstance(e, Var):
                out.add(e.name)
            stack.extend(e.kids())
        return out


class Var(Expr):
    def __init__(self, name: str, sym: Sym) -> None:
        self.name, self.t, self.exact, self.nonneg, self.runtime = name, sym.t, sym.exact, sym.nonneg, sym.runtime
        self.root, self.trsrc, self.ssa = sym.root, sym.tr_of, sym.ssa

    def src(self) -> str:
        return self.name


class Num(Expr):
    """A number, written as a literal or as `name`, a constant of the kernel function."""

    def __init__(self, v: int | float, name: str | None = None) -> None:
        self.v, self.name = v, name
        self.t = "int" if isinstance(v, int) else "float"
        self.exact, self.nonneg = True, v >= 0

    def src(self) -> str:
        return self.name or repr(self.v)


class CoreIdx(Expr):
    t, exact, runtime = "int", True, True

    def __init__(self, d: int) -> None:
        self.d = d

    def src(self) -> str:
        return f"core_index({self.d})"


class IntOp(Expr):
    """Run-time (or constant) number arithmetic: ints with + - * // %, floats with + - * /."""

    def __init__(self, op: str, a: Expr, b: Expr) -> None:
        self.op, self.a, self.b = op, a, b
        self.t = "int" if a.t == b.t == "int" and op != "/" else "float"
        self.exact = self.t == "int"
        self.runtime = a.runtime or b.runtime
        if op in ("+", "*"):
            self.nonneg = a.nonneg and b.nonneg
        elif op in ("//", "%"):
            self.nonneg = (a.nonneg or op == "%") and b.nonneg
        else:
            self.nonneg = False

    def kids(self) -> tuple[Expr, ...]:
        return (self.a, self.b)

    def src(self) -> str:
        return f"({self.a.src()} {self.op} {self.b.src()})"


class Cond(Expr):
    """An integer comparison, `and` / `or` of two, or `not`: an `if` condition."""

    t, exact = "cond", True

    def __init__(self, op: str, a: Expr, b: Expr | None = None) -> None:
        self.op, self.a, self.b = op, a, b
        if op in ("and", "or"):  # (a constant part could decide it at compile time)
            self.runtime = a.runtime and b.runtime
        else:
            self.runtime = a.runtime or (b is not None and b.runtime)

    def kids(self) -> tuple[Expr, ...]:
        return (self.a,) if self.b is None else (self.a, self.b)

    def src(self) -> str:
        if self.op == "not":
            return f"(not {self.a.src()})"
        return f"({self.a.src()} {self.op} {self.b.src()})"


class IfNum(Expr):
    """`(a if cond else b)` between two numbers."""

    def __init__(self, cond: Cond, a: Num, b: Num) -> None:
        self.cond, self.a, self.b = cond, a, b
        self.t = "int" if a.t == b.t == "int" else "float"
        self.nonneg = a.nonneg and b.nonneg

    def kids(self) -> tuple[Expr, ...]:
        return (self.cond, self.a, self.b)

    def src(self) -> str:
        return f"({self.a.src()} if {self.cond.src()} else {self.b.src()})"


def _binary_type(a: Expr, b: Expr) -> BT:
    if isinstance(a.t, BT) and isinstance(b.t, BT):
        shape = broadcast(a.t.shape, b.t.shape)
        assert shape is not None, (a.src(), b.src())
        return BT(shape, join(a.t.dtype, b.t.dtype))
    return a.t if isinstance(a.t, BT) else b.t


class Bin(Expr):
    """`a op b` with op in + - * / (at least one operand a block)."""

    def __init__(self, op: str, a: Expr, b: Expr, aug: bool = False) -> None:
        self.op, self.a, self.b = op, a, b
        self.t = _binary_type(a, b)

    def kids(self) -> tuple[Expr, ...]:
        return (self.a, self.b)

    def src(self) -> str:
        return f"({self.a.src()} {self.op} {self.b.src()})"


class Cmp(Expr):
    """`a op b` with op in >= > <= < == !=: a 1.0 / 0.0 block (operands exact)."""

    def __init__(self, op: str, a: Expr, b: Expr) -> None:
        self.op, self.a, self.b = op, a, b
        self.t = _binary_type(a, b)
        self.exact = a.exact and b.exact

    def kids(self) -> tuple[Expr, ...]:
        return (self.a, self.b)

    def src(self) -> str:
        return f"({self.a.src()} {self.op} {self.b.src()})"


class Unary(Expr):
    """exp, recip, ... as a method (`x.exp()`), a free function (`exp(x)`), `-x` or `abs(x)`."""

    def __init__(self, name: str, a: Expr, style: str = "m") -> None:
        self.name, self.a, self.style = name, a, style
        self.t = a.t
        self.exact = a.exact and name in ("abs", "neg", "relu")

    def kids(self) -> tuple[Expr, ...]:
        return (self.a,)

    def src(self) -> str:
        x = self.a.src()
        if self.name == "square":
            return f"({x} ** 2)" if self.style == "op" else f"{x}.pow(2)"
        if self.style == "op":
            return f"(-{x})" if self.name == "neg" else f"abs({x})"
        if self.style == "f":
            return f"{self.name}({x})"
        return f"{x}.{self.name}()"


class MatMul(Expr):
    def __init__(self, a: Expr, b: Expr, style: str = "@") -> None:
        self.a, self.b, self.style = a, b, style
        (m, k), (k2, n) = a.t.shape, b.t.shape
        assert k == k2
        self.t = BT((m, n), join(a.t.dtype, b.t.dtype))
        self.root = "mm"

    def kids(self) -> tuple[Expr, ...]:
        return (self.a, self.b)

    def src(self) -> str:
        if self.style == "f":
            return f"matmul({self.a.src()}, {self.b.src()})"
        return f"({self.a.src()} @ {self.b.src()})"


_fresh = itertools.count(1_000_000)


class Transpose(Expr):
    def __init__(self, a: Expr, style: str = "m") -> None:
        self.a, self.style = a, style
        r, c = a.t.shape
        self.t = BT((c, r), a.t.dtype)
        self.exact = a.exact
        self.root = "tr"
        self.trsrc = a.ssa if isinstance(a, Var) else next(_fresh)

    def kids(self) -> tuple[Expr, ...]:
        return (self.a,)

    def src(self) -> str:
        return f"transpose({self.a.src()})" if self.style == "f" else f"{self.a.src()}.transpose()"


class Reduce(Expr):
    """rowmax / rowsum / colmax / colsum, optionally folding in an accumulator (free function)."""

    def __init__(self, name: str, a: Expr, acc: Expr | None = None, style: str = "m") -> None:
        self.name, self.a, self.acc, self.style = name, a, acc, style
        r, c = a.t.shape
        shape = (r, 1) if name.startswith("row") else (1, c)
        dtype = F32 if name.endswith("sum") else a.t.dtype
        if acc is not None:
            assert acc.t.shape == shape
            dtype = join(dtype, acc.t.dtype)
        self.t = BT(shape, dtype)
        self.exact = a.exact and name.endswith("max") and (acc is None or acc.exact)

    def kids(self) -> tuple[Expr, ...]:
        return (self.a,) if self.acc is None else (self.a, self.acc)

    def src(self) -> str:
        x = self.a.src()
        if self.acc is not None or self.style == "f":
            return f"{self.name}({x}{', ' + self.acc.src() if self.acc is not None else ''})"
        row = self.name.startswith("row")
        if self.style == "dim":  # rowmax(dim=-1), colsum(axis=0), ...
            return f"{x}.{self.name}({'dim' if row else 'axis'}={-1 if row else 0})"
        if self.style == "generic":  # x.max(dim=-1) / x.sum(axis=-2)
            return f"{x}.{self.name[3:]}({'dim' if row else 'axis'}={1 if row else -2})"
        return f"{x}.{self.name}()"


class MaxMin(Expr):
    def __init__(self, name: str, a: Expr, b: Expr) -> None:
        self.name, self.a, self.b = name, a, b
        self.t = _binary_type(a, b)
        self.exact = a.exact and b.exact

    def kids(self) -> tuple[Expr, ...]:
        return (self.a, self.b)

    def src(self) -> str:
        return f"{self.name}({self.a.src()}, {self.b.src()})"


class Where(Expr):
    def __init__(self, c: Expr, a: Expr, b: Expr) -> None:
        self.c, self.a, self.b = c, a, b
        shape = c.t.shape
        for v in (a, b):
            if isinstance(v.t, BT):
                shape = broadcast(shape, v.t.shape) or shape
        blocks = [v.t.dtype for v in (a, b) if isinstance(v.t, BT)]
        dtype = F32 if F32 in blocks else blocks[0] if blocks else F32
        self.t = BT(shape, dtype)
        self.exact = a.exact and b.exact

    def kids(self) -> tuple[Expr, ...]:
        return (self.c, self.a, self.b)

    def src(self) -> str:
        return f"where({self.c.src()}, {self.a.src()}, {self.b.src()})"


class Fill(Expr):
    def __init__(self, v: float, shape: tuple[int, int], dtype: str | None = None, style: int = 0) -> None:
        self.v, self.shape, self.dtype, self.style = v, shape, dtype, style
        self.t = BT(shape, dtype or F32)
        self.exact = True

    def src(self) -> str:
        shape = f"({self.shape[0]}, {self.shape[1]})"
        if self.style == 1:
            text = f"fill({self.v!r}, shape={shape}"
        else:
            text = f"fill({self.v!r}, {shape}"
        return text + (f", dtype={self.dtype!r})" if self.dtype else ")")


class Iota(Expr):
    def __init__(self, which: str, shape: tuple[int, int]) -> None:
        self.which, self.shape = which, shape
        self.t = BT(shape, F32)
        self.exact = True

    def src(self) -> str:
        return f"{self.which}(({self.shape[0]}, {self.shape[1]}))"


class AsType(Expr):
    """`x.astype("bf16")`, or `x.astype(y.dtype)` with `like` a name of that format."""

    def __init__(self, a: Expr, dtype: str, like: str | None = None) -> None:
        self.a, self.dtype, self.like = a, dtype, like
        self.t = BT(a.t.shape, dtype)
        self.exact = a.exact
        if dtype == a.t.dtype:  # the same block: an alias
            self.root, self.trsrc = a.root, a.trsrc
            self.ssa = getattr(a, "ssa", None)

    def kids(self) -> tuple[Expr, ...]:
        return (self.a,)

    def src(self) -> str:
        return f"{self.a.src()}.astype({self.like + '.dtype' if self.like else repr(self.dtype)})"


@dataclass
class Helper:
    """A plain function of the module, inlined where a thread calls it: `def h0(p, q): r = ...; return ...`."""

    name: str
    params: list[str]
    types: list[BT]
    body: list[tuple[str, Expr]]  # assignments, then the returned expression under the name ""
    t: BT

    def emit(self, out: Emitter) -> None:
        out.line(0, f"def {self.name}({', '.join(self.params)}):", None)
        for name, e in self.body:
            out.line(1, f"return {e.src()}" if name == "" else f"{name} = {e.src()}", None)


class Call(Expr):
    def __init__(self, helper: Helper, args: list[Expr]) -> None:
        self.helper, self.args = helper, args
        self.t = helper.t

    def kids(self) -> tuple[Expr, ...]:
        return tuple(self.args)

    def src(self) -> str:
        return f"{self.helper.name}({', '.join(a.src() for a in self.args)})"


def alias_root(e: Expr) -> Var | None:
    """The variable `e` is the very same block as (`x`, or `x.astype(x.dtype)`), if any."""
    while isinstance(e, AsType) and e.dtype == e.a.t.dtype:
        e = e.a
    return e if isinstance(e, Var) else None


# ---- statements -------------------------------------------------------------------------------


class Stmt:
    def emit(self, out: Emitter, ind: int) -> None:
        raise NotImplementedError

    def assigned(self) -> list[str]:
        """Names this statement may bind (as Python's assignment rules see them)."""
        return []


@dataclass
class Assign(Stmt):
    name: str
    expr: Expr
    aug: str | None = None  # `name op= expr`: expr is then the whole `name op rhs` Bin

    def emit(self, out: Emitter, ind: int) -> None:
        if self.aug:  # the expression is `name op rhs`
            out.line(ind, f"{self.name} {self.aug}= {self.expr.b.src()}", self)
        else:
            out.line(ind, f"{self.name} = {self.expr.src()}", self)

    def assigned(self) -> list[str]:
        return [self.name]


@dataclass
class TupleAssign(Stmt):
    """`a, b = e1, e2` (all right-hand sides evaluated before any name is bound)."""

    names: list[str]
    exprs: list[Expr]

    def emit(self, out: Emitter, ind: int) -> None:
        out.line(ind, f"{', '.join(self.names)} = {', '.join(e.src() for e in self.exprs)}", self)

    def assigned(self) -> list[str]:
        return list(self.names)


@dataclass
class Pop(Stmt):
    name: str
    cb: int
    cb_name: str
    method: str = "pop"

    def emit(self, out: Emitter, ind: int) -> None:
        out.line(ind, f"{self.name} = {self.cb_name}.{self.method}()", self)

    def assigned(self) -> list[str]:
        return [self.name]


@dataclass
class With(Stmt):
    name: str
    cb: int
    cb_name: str
    body: list[Stmt]

    def emit(self, out: Emitter, ind: int) -> None:
        out.line(ind, f"with {self.cb_name}.wait() as {self.name}:", self)
        emit_body(out, self.body, ind + 1)

    def assigned(self) -> list[str]:
        return [self.name, *assigned_in(self.body)]


@dataclass
class For(Stmt):
    var: str
    start: int
    n: int
    body: list[Stmt]
    carried: list[tuple[str, Any]] = field(default_factory=list)  # (name, type at loop entry)
    style: int = 0
    step: int = 1
    n_name: str | None = None  # the trip count is this constant of the kernel function

    @property
    def values(self) -> range:
        return range(self.start, self.start + self.n * self.step, self.step)

    def emit(self, out: Emitter, ind: int) -> None:
        n = self.n_name or str(self.n)
        if self.step != 1:
            rng = f"range({self.start}, {self.start + self.n * self.step}, {self.step})"
        elif self.start == 0 and self.style == 0:
            rng = f"range({n})"
        elif self.style == 2:
            rng = f"range({self.start}, {self.start} + {n}, 1)"
        else:
            rng = f"range({self.start}, {self.start + self.n})"
        out.line(ind, f"for {self.var} in {rng}:", self)
        emit_body(out, self.body, ind + 1)

    def assigned(self) -> list[str]:
        return [self.var, *assigned_in(self.body)]


@dataclass
class If(Stmt):
    cond: Cond
    body: list[Stmt]
    orelse: list[Stmt]
    joins: list[tuple[str, Any]] = field(default_factory=list)  # names readable after, joined type

    def emit(self, out: Emitter, ind: int) -> None:
        out.line(ind, f"if {self.cond.src()}:", self)
        emit_body(out, self.body, ind + 1)
        if self.orelse:
            out.line(ind, "else:", None)
            emit_body(out, self.orelse, ind + 1)

    def assigned(self) -> list[str]:
        return assigned_in(self.body) + assigned_in(self.orelse)


@dataclass
class Reserve(Stmt):
    name: str

    def emit(self, out: Emitter, ind: int) -> None:
        out.line(ind, f"{self.name} = out_cb.reserve()", self)

    def assigned(self) -> list[str]:
        return [self.name]


@dataclass
class StoreInto(Stmt):
    """`o.store(e)` into a reserved `o`; `o` None: `out_cb.reserve().store(e)`."""

    target: str | None
    expr: Expr

    def emit(self, out: Emitter, ind: int) -> None:
        who = self.target if self.target else "out_cb.reserve()"
        out.line(ind, f"{who}.store({self.expr.src()})", self)


@dataclass
class WithReserve(Stmt):
    name: str
    body: list[Stmt]

    def emit(self, out: Emitter, ind: int) -> None:
        out.line(ind, f"with out_cb.reserve() as {self.name}:", self)
        emit_body(out, self.body, ind + 1)

    def assigned(self) -> list[str]:
        return [self.name, *assigned_in(self.body)]


@dataclass
class OutPop(Stmt):
    """The roadmap's closing `out_cb.pop()`: only marks the block done (implicit writer)."""

    def emit(self, out: Emitter, ind: int) -> None:
        out.line(ind, "out_cb.pop()", self)


@dataclass
class Raw(Stmt):
    """Verbatim lines (a mutation); `mark` is the index of the line the error must name."""

    lines: list[str]
    mark: int | None = 0

    def emit(self, out: Emitter, ind: int) -> None:
        for k, text in enumerate(self.lines):
            extra = len(text) - len(text.lstrip(" "))
            out.line(ind + extra // 4, text.lstrip(" "), self if k == self.mark else None)

    def assigned(self) -> list[str]:
        return []


def assigned_in(stmts: list[Stmt]) -> list[str]:
    out: list[str] = []
    for s in stmts:
        for n in s.assigned():
            if n not in out:
                out.append(n)
    return out


class Emitter:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.where: dict[int, int] = {}  # id(stmt) -> 1-based line

    def line(self, ind: int, text: str, stmt: Stmt | None) -> None:
        self.lines.append("    " * ind + text)
        if stmt is not None:
            self.where.setdefault(id(stmt), len(self.lines))


def emit_body(out: Emitter, body: list[Stmt], ind: int) -> None:
    if not body:
        out.line(ind, "pass", None)
    for s in body:
        s.emit(out, ind)


# ---- kernels ----------------------------------------------------------------------------------


@dataclass
class Arg:
    """A kernel argument: its CB's block and depth, and how blocks move between DRAM and the CB."""

    name: str
    dtype: str
    block: tuple[int, int]  # tiles
    depth: int
    layout: tuple[int, int]  # blocks per core: (rows, cols) of the shard (of the tensor when shared)
    mode: str  # implicit | rowmajor | colmajor | shared
    output: bool = False
    style: int = 0  # which spelling an explicit reader / writer uses
    bad_index: bool = False  # mutation: a constant stream index out of range
    bad_runtime_index: bool = False  # mutation: a run-time stream index out of range
    count_delta: int = 0  # mutation: the reader / writer moves this many blocks more
    bad_params: bool = False  # mutation: the reader / writer declares one CB parameter too few

    @property
    def bshape(self) -> tuple[int, int]:
        return 32 * self.block[0], 32 * self.block[1]

    @property
    def count(self) -> int:
        return self.layout[0] * self.layout[1]

    def shape(self, grid: tuple[int, int]) -> tuple[int, int]:
        (nr, nc), (bh, bw) = self.layout, self.bshape
        if self.mode == "shared":
            return nr * bh, nc * bw
        return grid[0] * nr * bh, grid[1] * nc * bw

    def order(self, core: tuple[int, int]) -> list[tuple[int, int]]:
        """Block indices this core moves through the CB, in order (mirrors the reader / writer)."""
        (nr, nc), (r, c) = self.layout, core
        if self.mode == "colmajor":
            return [(r * nr + t % nr, c * nc + t // nr) for t in range(self.count)]
        if self.mode == "shared":
            return [(t // nc, t % nc) for t in range(self.count)]
        return [(r * nr + t // nc, c * nc + t % nc) for t in range(self.count)]

    def index_src(self, grid: tuple[int, int]) -> str:
        nr, nc = self.layout
        if self.bad_index:
            return f"{grid[0] * nr + 1}, 0"
        if self.bad_runtime_index:
            return f"core_index(0) * {nr} + t // {nc} + {grid[0] * nr}, core_index(1) * {nc} + t % {nc}"
        if self.mode == "colmajor":
            return f"core_index(0) * {nr} + t % {nr}, core_index(1) * {nc} + t // {nr}"
        if self.mode == "shared":
            return f"t // {nc}, t % {nc}"
        return f"core_index(0) * {nr} + t // {nc}, core_index(1) * {nc} + t % {nc}"


@dataclass
class Program:
    grid: tuple[int, int]
    args: list[Arg]  # inputs, then the output
    body: list[Stmt]
    cb_params: list[str] | None = None  # mutation: the compute thread's parameter list
    mutation: str | None = None
    mark: Stmt | None = None  # the statement whose line the error must name
    mark_kernel: bool = False  # ... or the kernel's decorator line
    float64_input: int | None = None  # mutation: this input is passed as float64
    ragged_input: int | None = None  # mutation: this input gets 16 extra columns
    source: str = ""
    expect_line: int | None = None
    bugs: frozenset[str] = frozenset()
    options: dict[str, Any] = field(default_factory=dict)  # more pykernel_gen arguments (the DST mode)
    helpers: list[Helper] = field(default_factory=list)
    consts: dict[str, int | float] = field(default_factory=dict)  # constants of the kernel function

    @property
    def inputs(self) -> list[Arg]:
        return self.args[:-1]

    @property
    def out(self) -> Arg:
        return self.args[-1]

    def render(self) -> str:
        names = [a.name for a in self.args]
        cbs = self.cb_params if self.cb_params is not None else [f"{n}_cb" for n in names]
        params = ", ".join(f"{n}_cb" for n in names)
        bfs = ", ".join(f"({a.block[0]}, {a.block[1]}{', ' + str(a.depth) if a.depth != 1 else ''})" for a in self.args)
        o = Emitter()
        o.line(0, f"from tilegrid import {', '.join(EXPORTS)}  # noqa: F401", None)
        o.line(0, "", None)
        o.line(0, "", None)
        for h in self.helpers:
            h.emit(o)
            o.line(0, "", None)
            o.line(0, "", None)
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        o.line(0, f"@pykernel_gen(grid={self.grid}, block_factors=[{bfs}]{opts})", None)
        decorator = len(o.lines)
        o.line(0, f"def kern({', '.join(names)}):", None)
        for k, v in self.consts.items():
            o.line(1, f"{k} = {v!r}", None)
        explicit = [a for a in self.args if a.mode != "implicit"]
        for a in explicit:
            o.line(1, f"{a.name}_s = Stream({a.name})", None)
        o.line(0, "", None)
        o.line(1, "@compute()", None)
        o.line(1, f"async def comp({', '.join(cbs)}):", None)
        def_line = len(o.lines)
        emit_body(o, self.body, 2)
        threads = ["comp"]
        for a in explicit:
            th = f"{'write' if a.output else 'read'}_{a.name}"
            threads.append(th)
            o.line(0, "", None)
            o.line(1, "@datamovement()", None)
            o.line(1, f"async def {th}({params if not a.bad_params else params.rsplit(', ', 1)[0]}):", None)
            if a.bad_params:
                self.expect_line = len(o.lines)
            o.line(2, f"for t in range({a.count + a.count_delta}):", None)
            idx = f"{a.name}_s[{a.index_src(self.grid)}]"
            cb = f"{a.name}_cb"
            if a.output:
                lines = [f"dma({cb}.pop(), {idx}).wait()",
                         [f"blk = {cb}.pop()", f"dma(blk, {idx}).wait()"],
                         [f"with {cb}.wait() as blk:", f"    dma(blk, {idx}).wait()"]][a.style % 3]
            else:
                lines = [f"dma({idx}, {cb}.reserve()).wait()",
                         [f"blk = {cb}.reserve()", f"dma({idx}, blk).wait()"],
                         [f"with {cb}.reserve() as blk:", f"    dma({idx}, blk).wait()"],
                         [f"h = dma({idx}, {cb}.reserve())", "h.wait()"]][a.style % 4]
            for k, text in enumerate([lines] if isinstance(lines, str) else lines):
                o.line(3 + (text.startswith("    ")), text.strip(), None)
                if (a.bad_index or a.bad_runtime_index) and "dma(" in text:
                    self.expect_line = len(o.lines)
        o.line(0, "", None)
        o.line(1, f"return Program({', '.join(threads)})({', '.join(names)})", None)
        self.source = "\n".join(o.lines) + "\n"
        if self.mark is not None:
            self.expect_line = o.where[id(self.mark)]
        elif self.mark_kernel:
            self.expect_line = decorator
        elif self.cb_params is not None:
            self.expect_line = def_line
        return self.source


# ---- the generator ----------------------------------------------------------------------------


@dataclass
class Sym:
    """What the generator knows about a name at a point of the thread body."""

    t: Any  # BT | "int" | "float" | "reserved"
    exact: bool = False
    nonneg: bool = True
    runtime: bool = False  # an int known only at run time
    slot: int | None = None  # a popped CB slot this name is (an alias of)
    ssa: int = 0  # value identity: aliases share it
    root: str = ""
    tr_of: Any = None
    frame: int | None = None  # the `with` body it was assigned in
    uses: int = 0
    avoid: bool = False  # not to be read (a KNOWN_BUGS trigger)
    must: bool = False  # should reach the output (an accumulator, a popped block)


@dataclass
class Site:
    """A point between two statements where a mutation may be inserted."""

    stmts: list[Stmt]
    index: int
    env: dict[str, Sym]
    released: list[str]  # popped blocks (or aliases) released before this point
    loop_locals: list[str]  # names assigned in a finished loop and not carried out of it
    outer: list[str]  # matrix blocks defined before the innermost enclosing loop
    in_loop: bool
    end_of_loop: bool
    in_if: bool = False


class Gen:
    def __init__(self, draw: Any, bugs: frozenset[str]) -> None:
        self.draw = draw
        self.bugs = bugs
        self.env: dict[str, Sym] = {}
        self.ids = itertools.count(1)
        self.names = itertools.count()
        self.sites: list[Site] = []
        self.released: list[str] = []
        self.loop_locals: list[str] = []
        self.loops: list[tuple[str, dict[str, Sym], int]] = []  # (loop var, env before the loop, start)
        self.frames: list[int] = []
        self.scopes: list[list[int]] = []  # slots popped in each open Python block
        self.acc_updates: dict[int, list[str]] = {}
        self.in_if = False
        self.in_helper = False

    # ---- drawing ----------------------------------------------------------------------------

    def integer(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def pick(self, seq: Any) -> Any:
        seq = list(seq)
        return seq[self.integer(0, len(seq) - 1)]

    def weighted(self, options: list[tuple[int, Any]]) -> Any:
        options = [(w, v) for w, v in options if w > 0]
        k = self.integer(0, sum(w for w, _ in options) - 1)
        for w, v in options:
            if k < w:
                return v
            k -= w
        raise AssertionError

    def coin(self, percent: int) -> bool:
        return self.integer(0, 99) < percent

    def fresh(self, prefix: str) -> str:
        return f"{prefix}{next(self.names)}"

    # ---- names ------------------------------------------------------------------------------

    def var(self, name: str) -> Var:
        s = self.env[name]
        s.uses += 1
        return Var(name, s)

    def blocks(self, shape: tuple[int, int] | None = None, exact: bool = False) -> list[str]:
        return [n for n, s in self.env.items() if isinstance(s.t, BT) and not s.avoid
                and (shape is None or s.t.shape == shape) and (s.exact or not exact)]

    def bind(self, name: str, e: Expr) -> Sym:
        al = alias_root(e)
        if al is not None:
            src = self.env[al.name]
            sym = Sym(e.t, e.exact, slot=src.slot, ssa=src.ssa, root=src.root, tr_of=src.tr_of,
                      frame=self.frames[-1] if self.frames else None)
        else:
            sym = Sym(e.t, e.exact, e.nonneg, ssa=next(self.ids), root=e.root, tr_of=e.trsrc,
                      frame=self.frames[-1] if self.frames else None)
        self.env[name] = sym
        return sym

    def site(self, stmts: list[Stmt], end_of_loop: bool = False) -> None:
        outer: list[str] = []
        if self.loops:
            before = self.loops[-1][1]
            outer = [n for n, s in before.items() if n in self.env and isinstance(s.t, BT) and s.t.shape[0] > 1
                     and s.t.shape[1] > 1 and s.slot is None and not s.avoid]
        self.sites.append(Site(stmts, len(stmts), dict(self.env), list(self.released), list(self.loop_locals),
                               outer, bool(self.loops), end_of_loop, self.in_if))

    def release(self, slots: list[int]) -> None:
        for n, s in list(self.env.items()):
            if s.slot is not None and s.slot in slots:
                del self.env[n]
                self.released.append(n)

    # ---- structure --------------------------------------------------------------------------

    def program(self) -> Program:
        self.grid = self.pick([(1, 1), (1, 1), (1, 2), (2, 1), (2, 2)])
        self.depth = self.weighted([(3, 0), (4, 1), (2, 2)])
        self.trips = [1] + [self.weighted([(3, 2), (2, 1), (2, 3)]) for _ in range(self.depth)]
        self.out_level = self.integer(0, self.depth)
        self.dims = self.draw(st.lists(st.sampled_from([32, 64, 96, 128]), min_size=1, max_size=3, unique=True))
        n_in = self.integer(1, 3)
        self.levels: list[int] = []
        args = []
        for k in range(n_in):
            level = self.integer(0, self.depth)
            self.levels.append(level)
            args.append(self.arg("abc"[k], level, output=False))
        args.append(self.arg("out", self.out_level, output=True))
        self.args = args
        self.scopes.append([])
        self.consts: dict[str, int | float] = {}
        self.helpers: list[Helper] = []
        body = self.level(0)
        self.site(body)
        options = {}
        if self.coin(20):
            options["fp32_acc"] = False
        if self.coin(20):
            options["dst_double_buffer"] = False
        return Program(self.grid, args, body, bugs=self.bugs, options=options, consts=self.consts,
                       helpers=self.helpers)

    def helper(self, shape: tuple[int, int]) -> Helper:
        """A module-level helper returning a `shape` block (an existing one, or a new one)."""
        known = [h for h in self.helpers if h.t.shape == shape]
        if known and self.coin(50):
            return self.pick(known)
        name = f"h{len(self.helpers)}"
        r, c = shape
        types = [BT(self.weighted([(3, shape), (1, (r, 1)), (1, (1, c))]), self.pick([BF16, F32]))
                 for _ in range(self.integer(1, 2))]
        params = [f"p{k}" for k in range(len(types))]
        saved = self.env
        self.env = {p: Sym(t, ssa=next(self.ids)) for p, t in zip(params, types)}
        self.in_helper = True
        body: list[tuple[str, Expr]] = []
        try:
            if self.coin(50):
                e = self.expr(self.pick_shape_in(shape), self.integer(1, 2))
                body.append(("q", e))
                self.env["q"] = Sym(e.t, ssa=next(self.ids))
            ret = self.reach(self.expr(shape, self.integer(1, 2)), shape, everything=True)
            if alias_root(ret) is not None:
                ret = Bin("+", ret, Num(0.0))
            body.append(("", ret))
        finally:
            self.env, self.in_helper = saved, False
        h = Helper(name, params, types, body, ret.t)
        self.helpers.append(h)
        return h

    def pick_shape_in(self, shape: tuple[int, int]) -> tuple[int, int]:
        return self.pick([shape, shape, (shape[0], 1), (1, shape[1])])

    def const(self, v: int | float) -> Num:
        """`v`, sometimes as a constant of the kernel function (not in a module-level helper)."""
        if self.in_helper or not self.coin(15):
            return Num(v)
        for k, w in self.consts.items():
            if w == v and type(w) is type(v):
                return Num(v, k)
        name = f"K{len(self.consts)}"
        self.consts[name] = v
        return Num(v, name)

    def arg(self, name: str, level: int, output: bool) -> Arg:
        count = 1
        for n in self.trips[1:level + 1]:
            count *= n
        dtype = self.pick([BF16, F32])
        shape = (self.pick(self.dims), self.pick(self.dims))
        divisors = [d for d in range(1, count + 1) if count % d == 0]
        nr = self.pick(divisors)
        modes = ["implicit", "implicit", "rowmajor", "colmajor"] + ([] if output else ["shared"])
        return Arg(name, dtype, (shape[0] // 32, shape[1] // 32), self.pick([1, 1, 2]), (nr, count // nr),
                   self.pick(modes), output, self.integer(0, 3))

    def level(self, L: int) -> list[Stmt]:
        plan: list[tuple] = []
        pops = [k for k, lv in enumerate(self.levels) if lv == L]
        for k in self.draw(st.permutations(pops)):
            plan.append(("pop", k))
        plan += [("assign",)] * self.integer(0, 2)
        plan += [("update", n) for n in self.acc_updates.pop(L, [])]
        if self.coin(30):
            plan.append(("if",))
        if L < self.depth:
            plan.append(("loop", L + 1))
            plan += [("assign",)] * self.integer(0, 1)
        if L == self.out_level:
            plan.append(("store",))
        stmts: list[Stmt] = []
        self.items(plan, stmts, L)
        return stmts

    def items(self, plan: list[tuple], stmts: list[Stmt], L: int) -> None:
        while plan:
            item = plan.pop(0)
            self.site(stmts)
            kind = item[0]
            if kind == "pop":
                self.pop(item[1], plan, stmts, L)
            elif kind == "assign":
                self.assign(stmts)
            elif kind == "update":
                if item[1] in self.env and not self.env[item[1]].avoid:
                    self.update(item[1], stmts)
            elif kind == "if":
                self.if_stmt(stmts)
            elif kind == "loop":
                self.loop(item[1], stmts)
            elif kind == "store":
                self.store(stmts)

    def pop(self, k: int, plan: list[tuple], stmts: list[Stmt], L: int) -> None:
        a = self.args[k]
        name = self.fresh("x")
        slot = next(self.ids)
        style = self.weighted([(4, "pop"), (1, "wait"), (3, "with")])
        sym = Sym(BT(a.bshape, a.dtype), exact=True, slot=slot, ssa=next(self.ids), must=True)
        if style != "with":
            stmts.append(Pop(name, k, f"{a.name}_cb", style))
            self.env[name] = sym
            self.scopes[-1].append(slot)
            return
        inner = plan[:self.weighted([(1, 0), (4, len(plan)), (3, self.integer(0, len(plan)))])]
        del plan[:len(inner)]
        frame = next(self.ids)
        self.frames.append(frame)
        self.scopes.append([slot])
        sym.frame = frame
        self.env[name] = sym
        body: list[Stmt] = []
        self.items(inner, body, L)
        late = None
        if "absorbed_after_release" not in self.bugs and self.coin(30):
            late = self.absorbable(name, body)  # a matmul / transpose of the slot, used after the `with`
        self.site(body)
        stmts.append(With(name, k, f"{a.name}_cb", body))
        self.frames.pop()
        self.release(self.scopes.pop())
        if late is not None and late[0] in self.env:  # (built now: the slot is released)
            use = self.absorb_after(*late)
            tname = self.fresh("t")
            stmts.append(Assign(tname, use))
            self.bind(tname, use).must = True
        if "absorbed_after_release" in self.bugs:
            for s in self.env.values():
                if s.frame == frame and s.root in ("mm", "tr"):
                    s.avoid = True

    def absorbable(self, x: str, body: list[Stmt]) -> tuple[str, tuple[int, int]]:
        """In the `with` body of slot `x`: `p = x @ w` or `p = x.transpose()`, for `absorb_after` to use
        after the `with` where a fusion could absorb that matmul / transpose (`v + p`, `v @ p`)."""
        r, c = self.env[x].t.shape
        p = self.fresh("t")
        if self.coin(50):
            k = self.pick(self.dims)
            e: Expr = MatMul(self.var(x), self.leaf((c, k)))
        else:
            e = Transpose(self.var(x))
        body.append(Assign(p, e))
        self.bind(p, e)
        return p, e.t.shape

    def absorb_after(self, p: str, shape: tuple[int, int]) -> Expr:
        if self.env[p].root == "mm":  # a lone add (a name, not a fill, on the other side) absorbs the matmul
            others = [n for n in self.blocks(shape) if n != p and not self.same_matmul(self.var(n), Var(p, self.env[p]))]
            other = self.var(self.pick(others)) if others else self.fill(shape)
            return Bin("+", other, self.var(p))
        return MatMul(self.leaf((self.pick(self.dims), shape[0])), self.var(p))

    def pick_shape(self) -> tuple[int, int]:
        fresh = [s.t.shape for s in self.env.values() if isinstance(s.t, BT) and s.uses == 0 and not s.avoid]
        if fresh and self.coin(60):
            return self.pick(fresh)
        out = self.args[-1].bshape
        mats = [out] + [a.bshape for a in self.args[:-1]] + [(self.pick(self.dims), self.pick(self.dims))]
        shape = self.pick(mats)
        return self.weighted([(12, shape), (2, (shape[0], 1)), (2, (1, shape[1])), (1, (1, 1))])

    def assign(self, stmts: list[Stmt]) -> None:
        if self.coin(15):  # two names at once
            names = [self.fresh("t"), self.fresh("t")]
            exprs = [self.expr(self.pick_shape(), self.integer(1, 2)) for _ in names]
            stmts.append(TupleAssign(names, exprs))
            for n, e in zip(names, exprs):
                self.bind(n, e).must = True
            return
        name = self.fresh("t")
        e = self.expr(self.pick_shape(), self.integer(1, 3))
        stmts.append(Assign(name, e))
        self.bind(name, e).must = True

    def loop(self, L: int, stmts: list[Stmt]) -> None:
        var = "ijk"[L - 1]
        n, start = self.trips[L], self.pick([0, 0, 1])
        accs = []
        for _ in range(self.integer(0, 2) + (1 if L > self.out_level and L == self.out_level + 1 else 0)):
            name = self.fresh("acc")
            shape = self.weighted([(3, self.args[-1].bshape), (2, self.pick_shape())])
            if self.coin(60):
                e: Expr = Fill(self.pick([0.0, 0.0, 1.0, -1.0, 0.5]), shape, self.pick([None, None, BF16, F32]),
                               self.integer(0, 1))
            else:
                e = self.expr(shape, 1)
                if alias_root(e) is not None:
                    e = Bin("*", e, Num(1.0))
            stmts.append(Assign(name, e))
            sym = self.bind(name, e)
            sym.must = True
            accs.append(name)
        if self.coin(25):  # a carried number
            name = self.fresh("n")
            v = self.pick([0, 1, 0.5, 0.0])
            stmts.append(Assign(name, Num(v)))
            self.env[name] = Sym("int" if isinstance(v, int) else "float", exact=isinstance(v, int),
                                 ssa=next(self.ids), runtime=True)  # (read only in and after the loop)
            accs.append(name)
        self.acc_updates[L] = accs
        self.site(stmts)
        before = dict(self.env)
        for name, sym in self.env.items():  # a block the body may reassign is exact only in the first iteration
            if isinstance(sym.t, BT) and sym.slot is None and sym.exact:
                self.env[name] = replace(sym, exact=False)
        self.loops.append((var, before, start))
        self.env[var] = Sym("int", exact=True, nonneg=True, ssa=next(self.ids), runtime=True)
        self.scopes.append([])
        released_before = len(self.released)
        body = self.level(L)
        self.site(body, end_of_loop=True)
        self.release(self.scopes.pop())
        self.loops.pop()
        self.acc_updates.pop(L, None)
        carried = []
        for name in assigned_in(body):
            if name == var or name not in before:
                continue
            s = before[name]
            if s.t == "reserved":
                continue
            carried.append((name, s.t))
        step = self.weighted([(6, 1), (1, 2)])
        n_name = self.const(n).name if step == 1 else None
        stmts.append(For(var, start, n, body, carried, self.integer(0, 2), step, n_name))
        # after the loop: carried names hold the loop's results; the rest of the body's names are gone
        new_env = {}
        for name, s in before.items():
            if name in self.env or any(c == name for c, _ in carried):
                new_env[name] = s
        for name, t in carried:
            old = before[name]
            new_env[name] = Sym(t, exact=False, nonneg=old.nonneg, ssa=next(self.ids), must=old.must,
                                runtime=t == "int")
        for name in assigned_in(body):
            if name not in new_env and name != var:
                self.loop_locals.append(name)
        # slots released in the body are unreadable after the loop too
        del self.released[released_before:]
        self.env = new_env

    def update(self, name: str, stmts: list[Stmt]) -> None:
        s = self.env[name]
        if s.t in ("int", "float"):
            if s.t == "int":
                rhs: Expr = self.pick([Num(1), self.int_expr(nonneg=True)])
                if not rhs.nonneg:
                    rhs = Num(1)
                e: Expr = IntOp("+", self.var(name), rhs)
            else:
                e = IntOp(self.pick(["+", "*"]), self.var(name), Num(self.pick([0.5, 1.5, 0.25])))
            stmts.append(Assign(name, e, aug=e.op if self.coin(30) else None))
            self.env[name] = Sym(s.t, exact=s.t == "int", nonneg=e.nonneg, ssa=next(self.ids), runtime=True)
            return
        shape = s.t.shape
        r, c = shape
        forms = [(4, "add"), (1, "sub"), (2, "aug"), (1, "decay"), (2, "max"), (1, "where"), (1, "if")]
        partners = [n for n in self.blocks(shape) if n != name and n in self.loops[-1][1] and self.env[n].slot is None
                    and self.env[n].t == s.t] if self.loops else []
        if partners:
            forms.append((2, "swap"))
        if r > 1 and c > 1:
            forms.append((4, "mm"))
        if c == 1 or r == 1:
            forms.append((4, "reduce"))
        pops = [n for n in self.blocks(shape) if self.env[n].slot is not None]
        if "carry_popped_block" not in self.bugs and pops:
            forms.append((2, "alias"))
        form = self.weighted(forms)
        d = self.integer(0, 2)
        acc = self.var(name)
        aug = None
        if form == "add":
            e: Expr = Bin("+", acc, self.expr(shape, d)) if self.coin(50) else Bin("+", self.expr(shape, d), acc)
            e = self.reach(e, shape)
        elif form == "sub":
            e = Bin("-", acc, self.expr(shape, d))
        elif form == "aug":
            op = self.pick(["+", "-", "*"])
            rhs = self.expr(shape, d) if op != "*" else self.bounded(shape, d)
            e, aug = Bin(op, acc, rhs), op
        elif form == "decay":
            e = self.reach(Bin("+", Bin("*", acc, Num(0.5)), self.expr(shape, d)), shape)
        elif form == "max":
            e = MaxMin(self.pick(["maximum", "minimum"]), acc, self.expr(shape, d))
        elif form == "where":
            e = Where(self.cond_block(shape), self.expr(shape, d), acc)
        elif form == "mm":
            k = self.pick(self.dims)
            e = Bin("+", acc, self.matmul((r, k), (k, c), d))
            if self.coin(30):
                aug = "+"
        elif form == "reduce":
            k = self.pick(self.dims)
            if c == 1 and r > 1 or (r, c) == (1, 1) and self.coin(50):
                e = Reduce(self.pick(["rowmax", "rowsum"]), self.expr((r, k), d), acc)
            else:
                e = Reduce(self.pick(["colmax", "colsum"]), self.expr((k, c), d), acc)
        elif form == "alias":
            e = self.var(self.pick(pops))
        elif form == "swap":  # two carried blocks exchange roles: `a, b = b + e, a`
            other = self.pick(partners)
            first = Bin("+", self.var(other), self.expr(shape, d))
            second = Bin("*", acc, Num(1.0)) if self.coin(30) else acc
            stmts.append(TupleAssign([name, other], [first, second]))
            self.bind(name, first).must = s.must
            if alias_root(second) is not None:
                self.env[other] = Sym(second.t, ssa=acc.ssa, root=acc.root, tr_of=acc.trsrc, must=True,
                                      frame=self.frames[-1] if self.frames else None)
            else:
                self.bind(other, second).must = True
            return
        else:  # an if: start over on the first iteration
            var, _, start = self.loops[-1]
            cond = Cond("==", self.var(var), Num(start))
            first = self.expr(shape, d)
            if alias_root(first) is not None:
                first = Bin("*", first, Num(1.0))
            then = [Assign(name, first)]
            other = [Assign(name, Bin("+", self.var(name), self.expr(shape, d)))]
            t = BT(shape, join(first.t.dtype, other[0].expr.t.dtype))
            stmts.append(If(cond, then, other, [(name, t)]))
            self.env[name] = Sym(t, ssa=next(self.ids), must=s.must)
            return
        stmts.append(Assign(name, e, aug=aug))
        new = self.bind(name, e)
        new.must = s.must

    def if_stmt(self, stmts: list[Stmt]) -> None:
        cond = self.cond()
        before = dict(self.env)
        targets = [n for n in self.blocks() if self.env[n].slot is None]
        chosen = self.draw(st.lists(st.sampled_from(targets), max_size=2, unique=True)) if targets else []
        new = self.fresh("t") if self.coin(40) else None
        shape_new = self.pick_shape()
        self.in_if = True
        branches = []
        for b in range(2):
            self.env = dict(before)
            body: list[Stmt] = []
            if b == 1 and not self.coin(60) and new is None:
                branches.append((body, dict(self.env)))
                continue
            for n in chosen:
                if b == 1 and self.coin(30):
                    continue
                e = self.expr(before[n].t.shape, self.integer(0, 2))
                if alias_root(e) is not None:
                    e = Bin("+", e, Num(0.0))
                body.append(Assign(n, e))
                self.bind(n, e)
            if new is not None:
                e = self.expr(shape_new, self.integer(0, 2))
                if alias_root(e) is not None:
                    e = Bin("+", e, Num(0.0))
                body.append(Assign(new, e))
                self.bind(new, e)
            if not body or self.coin(20):
                self.site(body)
                tmp = self.fresh("u")
                e = self.expr(self.pick_shape(), 1)
                body.append(Assign(tmp, e))
                self.bind(tmp, e)
            self.site(body)
            branches.append((body, dict(self.env)))
        self.in_if = False
        (b1, e1), (b2, e2) = branches
        joins = []
        self.env = dict(before)
        for n in assigned_in(b1 + b2):
            s1, s2 = e1.get(n), e2.get(n)
            if s1 is None or s2 is None:
                self.env.pop(n, None)
                self.loop_locals.append(n)  # assigned in one branch only: unreadable after
                continue
            t = BT(s1.t.shape, join(s1.t.dtype, s2.t.dtype))
            joins.append((n, t))
            old = before.get(n)
            self.env[n] = Sym(t, ssa=next(self.ids), must=bool(old and old.must))
        stmts.append(If(cond, b1, b2, joins))

    def store(self, stmts: list[Stmt]) -> None:
        out = self.args[-1]
        r, c = out.bshape
        target = self.weighted([(8, (r, c)), (1, (r, 1)), (1, (1, c))])
        e = self.expr(target, self.integer(1, 3))
        e = self.reach(e, target)
        style = self.weighted([(4, "two"), (2, "with"), (2, "chain"), (1, "if"), (1, "gap")])
        o = self.fresh("o")
        if style == "chain":
            stmts.append(StoreInto(None, e))
        elif style == "with":
            body: list[Stmt] = [StoreInto(o, e)]
            stmts.append(WithReserve(o, body))
        elif style == "if":
            e2 = self.reach(self.expr(target, self.integer(0, 2)), target)
            stmts.append(Reserve(o))
            stmts.append(If(self.cond(), [StoreInto(o, e)], [StoreInto(o, e2)]))
        else:
            stmts.append(Reserve(o))
            self.env[o] = Sym("reserved")
            if style == "gap":
                self.site(stmts)
                self.assign(stmts)
            stmts.append(StoreInto(o, e))
            self.env.pop(o, None)
        if out.mode == "implicit" and self.coin(15):
            stmts.append(OutPop())

    def reach(self, e: Expr, target: tuple[int, int], everything: bool = False) -> Expr:
        """`e` combined with every accumulator and popped block in scope that it does not read yet."""
        used = e.names()
        for n, s in list(self.env.items()):
            if (s.must or everything) and not s.avoid and n not in used and isinstance(s.t, BT) and s.uses == 0:
                term = self.connect(n, target)
                if term is not None:
                    e = Bin(self.pick(["+", "-"]), e, term)
        return e

    def connect(self, name: str, target: tuple[int, int]) -> Expr | None:
        """Variable `name` brought to a shape that broadcasts to `target`."""
        s = self.env[name].t.shape
        v = self.var(name)
        if broadcast(s, target) == target:
            return v
        if (s[1], s[0]) == target:
            return Transpose(v)
        if s[0] == target[0] and s[1] > 1:
            return Reduce(self.pick(["rowmax", "rowsum"]), v)
        if s[1] == target[1] and s[0] > 1:
            return Reduce(self.pick(["colmax", "colsum"]), v)
        if s[1] > 1:
            v = Reduce("rowmax", v)
        if s[0] > 1:
            v = Reduce("colsum", v)
        return v

    # ---- expressions ------------------------------------------------------------------------

    def expr(self, shape: tuple[int, int], depth: int) -> Expr:
        """A block expression of exactly `shape`."""
        if depth <= 0:
            return self.leaf(shape)
        r, c = shape
        mat = r > 1 and c > 1
        kinds = [(3, "leaf"), (5, "bin"), (2, "scalar"), (3, "unary"), (1, "div"), (1, "maxmin"), (1, "astype"),
                 (1, "where"), (1, "cmp"), (2, "runtime")]
        if mat:
            kinds += [(3, "mm"), (1, "tr"), (2, "bcast"), (1, "outer")]
        if r == 1 or c == 1:
            kinds += [(3, "reduce"), (1, "tr")]
        if "vector_matmul" not in self.bugs:
            kinds += [(1, "vecmm")]
        if not self.in_helper:
            kinds += [(1, "call")]
        kind = self.weighted(kinds)
        d = depth - 1
        if kind == "leaf":
            same = self.blocks(shape)
            if same and self.coin(15):  # one value on both sides: `p + p`, `p * p`
                v = self.pick(same)
                op = self.pick(["+", "*"])
                if op == "+" and "matmul_reused" in self.bugs and self.env[v].root == "mm":
                    op = "*"
                return Bin(op, self.var(v), self.var(v))
            if r == c and same and self.coin(3) and "transpose_both" not in self.bugs:
                v = self.pick(same)  # `v.transpose() @ v.transpose()`
                return MatMul(Transpose(self.var(v)), Transpose(self.var(v)))
            return self.leaf(shape)
        if kind == "call":
            h = self.helper(shape)
            return Call(h, [self.expr(t.shape, d - 1) for t in h.types])
        if kind == "bin":
            a, b = self.expr(shape, d), self.expr(shape, d)
            op = self.pick(["+", "-", "*"])
            if op == "-" and a.src() == b.src():
                op = "+"
            if op == "+" and "matmul_reused" in self.bugs and self.same_matmul(a, b):
                op = "*"
            return Bin(op, a, b)
        if kind == "scalar":
            op = self.pick(["+", "-", "*", "/"])
            x = self.expr(shape, d)
            if op == "/":
                return Bin("/", x, Num(self.pick([2.0, -4.0, 0.5, 3.0])))
            n = self.const(self.pick(FLOATS + INTS))
            return Bin(op, x, n) if self.coin(50) else Bin(op, n, x)
        if kind == "runtime":
            op = self.pick(["+", "-", "*"])
            x = self.expr(shape, d)
            n = self.number()
            return Bin(op, x, n) if self.coin(50) else Bin(op, n, x)
        if kind == "unary":
            name = self.pick(UNARY)
            if name in NEEDS_POSITIVE:
                x = self.positive(shape, d)
            elif name == "exp":
                x = self.bounded(shape, d)
            else:
                x = self.expr(shape, d)
            if name in ("neg", "abs", "square"):  # -x, abs(x), x ** 2
                style = self.pick(["op", "m"])
            else:
                style = self.pick(["m", "f"]) if name in FREE_UNARY else "m"
            return Unary(name, x, style)
        if kind == "div":
            if self.coin(70):
                den_shape = self.pick([shape, (r, 1), (1, c)])
                return Bin("/", self.expr(shape, d), self.positive(den_shape, d))
            return Bin("/", Num(self.pick(FLOATS)), self.positive(shape, d))
        if kind == "maxmin":
            other = self.pick(["same", "vec", "num"])
            a = self.expr(shape, d)
            if other == "num":
                b: Expr = Num(self.pick(FLOATS))
            elif other == "vec":
                b = self.expr(self.pick([(r, 1), (1, c)]), d)
            else:
                b = self.expr(shape, d)
            a, b = (a, b) if self.coin(70) else (b, a)
            return MaxMin(self.pick(["maximum", "minimum"]), a, b)
        if kind == "astype":
            x = self.expr(shape, d)
            dtype = self.pick([BF16, F32])
            likes = [n for n, s in self.env.items() if isinstance(s.t, BT) and s.t.dtype == dtype and not s.avoid]
            like = self.pick(likes) if likes and self.coin(30) else None
            return AsType(x, dtype, like)
        if kind == "where":
            a = self.expr(shape, d) if self.coin(70) else Num(self.pick(FLOATS))
            b = self.expr(self.pick([shape, shape, (r, 1), (1, c)]), d) if self.coin(70) else Num(self.pick(FLOATS))
            return Where(self.cond_block(shape), a, b)
        if kind == "cmp":
            return self.cond_block(shape)
        if kind == "mm":
            ks = sorted(set(self.dims) | {s.t.shape[1] for s in self.env.values()
                                          if isinstance(s.t, BT) and s.t.shape[0] == r and s.t.shape[1] > 1})
            k = self.pick(ks)
            return self.matmul((r, k), (k, c), d)
        if kind == "tr":
            return Transpose(self.expr((c, r), d), self.pick(["m", "m", "f"]))
        if kind == "vecmm":  # a matmul with a row / column vector operand, or an inner dimension of 1
            k = self.pick([1] + list(self.dims)) if mat else self.pick(self.dims)
            return self.matmul((r, k), (k, c), d)
        if kind == "bcast":
            vec = self.weighted([(3, (r, 1)), (3, (1, c)), (1, (1, 1))])
            op = self.pick(["+", "-", "*", "/"])
            a = self.expr(shape, d)
            if op == "/":
                return Bin("/", a, self.positive(vec, d))
            b = self.expr(vec, d)
            return Bin(op, a, b) if self.coin(50) else Bin(op, b, a)
        if kind == "outer":
            return Bin(self.pick(["+", "-", "*"]), self.expr((r, 1), d), self.expr((1, c), d))
        assert kind == "reduce"
        return self.reduction(shape, d)

    def same_matmul(self, a: Expr, b: Expr) -> bool:
        return isinstance(a, Var) and isinstance(b, Var) and a.ssa == b.ssa and a.root == "mm"

    def matmul(self, ashape: tuple[int, int], bshape: tuple[int, int], d: int) -> Expr:
        a, b = self.expr(ashape, d), self.expr(bshape, d)
        if ("transpose_both" in self.bugs and a.trsrc is not None and a.trsrc == b.trsrc):
            a = Bin("*", a, Num(1.0))
        return MatMul(a, b, "f" if self.coin(15) else "@")

    def reduction(self, shape: tuple[int, int], d: int) -> Expr:
        r, c = shape
        k = self.weighted([(6, self.pick(self.dims)), (1, 1)])  # 1: a reduction over a vector's width
        row = c == 1 and (r > 1 or self.coin(50))
        name = self.pick(["rowmax", "rowsum"] if row else ["colmax", "colsum"])
        x = self.expr((r, k) if row else (k, c), d)
        if self.coin(25):
            return Reduce(name, x, self.expr(shape, max(d - 1, 0)))
        return Reduce(name, x, None, self.pick(["m", "m", "f", "dim", "generic"]))

    def leaf(self, shape: tuple[int, int]) -> Expr:
        """A name in scope (brought to `shape` if it has another), or a fill / index block."""
        r, c = shape
        opts: list[tuple[int, Any]] = []
        for n in self.blocks():
            s = self.env[n]
            fresh = s.uses == 0
            if s.t.shape == shape:
                opts.append((8 if fresh else 4, ("var", n)))
            elif r > 1 and c > 1 and s.t.shape == (c, r):
                opts.append((2, ("tr", n)))
            elif c == 1 and s.t.shape[0] == r and s.t.shape[1] > 1:
                opts.append((2, ("rowred", n)))
            elif r == 1 and s.t.shape[1] == c and s.t.shape[0] > 1:
                opts.append((2, ("colred", n)))
            elif r > 1 and c > 1 and s.t.shape[0] == r and s.t.shape[1] > 1:
                opts.append((3 if fresh else 1, ("mm_left", n)))
            elif r > 1 and c > 1 and s.t.shape[1] == c and s.t.shape[0] > 1:
                opts.append((3 if fresh else 1, ("mm_right", n)))
            else:
                opts.append((2 if fresh else 1, ("bcast", n)))
        if r > 1 and c > 1:
            opts.append((1, ("iota", None)))
        opts.append((1, ("fill", None)))
        kind, n = self.weighted(opts)
        if kind == "var":
            return self.var(n)
        if kind == "tr":
            return Transpose(self.var(n), self.pick(["m", "f"]))
        if kind == "rowred":
            return Reduce(self.pick(["rowmax", "rowsum"]), self.var(n), None, self.pick(["m", "f", "dim"]))
        if kind == "colred":
            return Reduce(self.pick(["colmax", "colsum"]), self.var(n), None, self.pick(["m", "f", "dim"]))
        if kind in ("mm_left", "mm_right"):
            k = self.env[n].t.shape[1 if kind == "mm_left" else 0]
            other_shape = (k, c) if kind == "mm_left" else (r, k)
            others = self.blocks(other_shape)
            other = self.var(self.pick(others)) if others and self.coin(70) else self.fill(other_shape)
            v = self.var(n)
            if "transpose_both" in self.bugs and v.trsrc is not None and v.trsrc == other.trsrc:
                other = self.fill(other_shape)
            return MatMul(v, other) if kind == "mm_left" else MatMul(other, v)
        if kind == "bcast":  # bring it down to a vector, then up to `shape`
            return self.shaped(self.connect(n, shape), shape)
        if kind == "iota":
            return Bin("*", Iota(self.pick(["row_index", "col_index"]), shape), Num(0.03125))
        return self.fill(shape)

    def fill(self, shape: tuple[int, int]) -> Fill:
        return Fill(self.pick(FLOATS), shape, self.pick([None, None, BF16, F32]), self.integer(0, 1))

    def shaped(self, e: Expr, shape: tuple[int, int]) -> Expr:
        """`e` (which broadcasts to `shape`) as a block of exactly `shape`."""
        if e.t.shape == shape:
            return e
        f = Fill(self.pick([0.5, 1.0, 2.0, -1.0]), shape, self.pick([None, BF16]))
        return Bin(self.pick(["+", "*"]), e, f) if self.coin(50) else Bin(self.pick(["+", "*", "-"]), f, e)

    def positive(self, shape: tuple[int, int], d: int) -> Expr:
        """An expression whose value is bounded away from zero (a safe divisor / log / sqrt argument)."""
        c = Num(self.pick(POSITIVE))
        kind = self.pick(["abs", "sigmoid", "relu", "max", "exp", "square", "fill"])
        if kind == "fill":
            return Fill(self.pick(POSITIVE), shape, self.pick([None, BF16]))
        x = self.expr(shape, d)
        if kind == "abs":
            return Bin("+", Unary("abs", x, self.pick(["op", "m"])), c)
        if kind == "sigmoid":
            return Bin("+", Unary("sigmoid", x, "m"), c)
        if kind == "relu":
            return Bin("+", c, Unary("relu", x, self.pick(["m", "f"])))
        if kind == "max":
            return MaxMin("maximum", x, c)
        if kind == "exp":
            return Unary("exp", Unary("tanh", x, "m"), self.pick(["m", "f"]))
        names = self.blocks(shape)
        v = self.var(self.pick(names)) if names else x
        return Bin("+", Bin("*", v, v), c)

    def bounded(self, shape: tuple[int, int], d: int) -> Expr:
        """An expression of modest size (an exp argument)."""
        r, c = shape
        kind = self.pick(["tanh", "sigmoid", "negabs", "softmax", "min", "raw"])
        x = self.expr(shape, d)
        if kind == "tanh":
            return Unary("tanh", x, self.pick(["m", "f"]))
        if kind == "sigmoid":
            return Bin("*", Unary("sigmoid", x, "f"), Num(2.0))
        if kind == "negabs":
            return Unary("neg", Unary("abs", x, "op"), "op")
        if kind == "softmax" and c > 1:
            names = self.blocks(shape)
            if names:
                n = self.pick(names)
                return Bin("-", self.var(n), Reduce("rowmax", self.var(n)))
        if kind == "min":
            return MaxMin("minimum", x, Num(2.0))
        return x

    def cond_block(self, shape: tuple[int, int]) -> Expr:
        """An exact comparison: a 1.0 / 0.0 block that broadcasts to `shape`."""
        r, c = shape
        exacts = self.blocks(shape, exact=True)
        op = self.pick([">=", ">", "<=", "<", "!=", "=="])
        if exacts and self.coin(70):
            a: Expr = self.var(self.pick(exacts))
            others = [n for n in self.blocks(exact=True) if broadcast(shape, self.env[n].t.shape) == shape]
            kind = self.pick(["num", "var", "red"])
            if kind == "var" and others:
                b: Expr = self.var(self.pick(others))
            elif kind == "red" and c > 1 and a.t.shape[1] > 1:
                b = Reduce("rowmax", self.var(a.name))
            else:
                b = Num(self.pick(FLOATS + (0.0, 0)))
            return Cmp(op, a, b) if self.coin(70) else Cmp(op, b, a)
        if r > 1 and c > 1:
            rows: Expr = Iota("row_index", shape)
            if self.coin(40):
                rows = Bin(self.pick(["+", "-"]), rows, self.int_expr())
                rows.exact = True  # small integers in f32
            return Cmp(op if self.coin(30) else ">=", rows, Iota("col_index", shape))
        return Cmp(op, Fill(self.pick(FLOATS), shape), Num(self.pick(FLOATS)))

    # ---- numbers ----------------------------------------------------------------------------

    def int_atom(self) -> Expr:
        opts: list[tuple[int, Any]] = [(1, Num(self.pick(INTS + (0, 4)))), (2, CoreIdx(self.integer(0, 1)))]
        for n, s in self.env.items():
            if s.t == "int":
                opts.append((4, n))
        a = self.weighted(opts)
        return self.var(a) if isinstance(a, str) else a

    def int_expr(self, nonneg: bool = False, depth: int | None = None) -> Expr:
        depth = self.integer(0, 2) if depth is None else depth
        if depth == 0:
            return self.int_atom()
        a = self.int_expr(depth=depth - 1)
        op = self.pick(["+", "-", "*", "//", "%"])
        if op in ("//", "%"):
            div = self.pick([2, 3, 4, -2, -3])
            if op == "%" and "negative_mod" in self.bugs and (not a.nonneg or div < 0):
                op = "//"
            e = IntOp(op, a, Num(div))
        else:
            e = IntOp(op, a, self.int_expr(depth=depth - 1))
        if nonneg and not e.nonneg:
            return self.int_atom() if self.coin(50) else IntOp("+", self.int_atom(), Num(1))
        return e

    def number(self) -> Expr:
        """A run-time (or constant) number used as a scalar operand of a block op."""
        kind = self.pick(["int", "int", "float", "ifexp", "var"])
        if kind == "float":
            return IntOp(self.pick(["*", "+"]), self.int_expr(), Num(self.pick([0.5, 0.25, -1.5])))
        if kind == "ifexp":
            if self.coin(50):
                return IfNum(self.cond(), Num(self.pick(INTS)), Num(self.pick(INTS)))
            return IfNum(self.cond(), Num(self.pick(FLOATS)), Num(self.pick(FLOATS)))
        if kind == "var":
            floats = [n for n, s in self.env.items() if s.t == "float"]
            if floats:
                return self.var(self.pick(floats))
        return self.int_expr()

    def cond(self) -> Cond:
        kind = self.weighted([(6, "cmp"), (1, "and"), (1, "or"), (1, "not")])
        if kind in ("and", "or"):
            return Cond(kind, self.cond_cmp(), self.cond_cmp())
        if kind == "not":
            return Cond("not", self.cond_cmp())
        return self.cond_cmp()

    def cond_cmp(self) -> Cond:
        a = self.int_expr()
        if not a.runtime:  # make it depend on something known only at run time (else the `if` is resolved)
            runtime = [n for n, s in self.env.items() if s.t == "int" and s.runtime]
            atom = self.var(self.pick(runtime)) if runtime and self.coin(70) else CoreIdx(self.integer(0, 1))
            a = IntOp(self.pick(["+", "-"]), atom, a)
        b = self.int_expr(depth=0) if self.coin(30) else Num(self.pick([0, 1, 2, -1]))
        return Cond(self.pick(["==", "!=", "<", "<=", ">", ">="]), a, b)


# ---- invalid programs -------------------------------------------------------------------------

# Mutations a valid program can suffer, each a mistake the language must reject with a
# TilegridError whose rendered text names the user's file (and, where it can, the line).
SITE_MUTATIONS = (
    "shape_mismatch", "matmul_inner", "use_after_release", "loop_local_after", "read_reserved",
    "unsupported", "extra_pop", "carried_shape", "one_branch", "store_wrong_shape",
    "runtime_div_by_zero", "runtime_mod_by_zero", "compute_fills_input",
)
OTHER_MUTATIONS = ("cb_count", "stream_const", "float64_input", "ragged_input", "never_written", "unfilled",
                   "store_twice", "extra_store", "compute_pops_output", "read_own_output", "stream_runtime",
                   "mover_extra", "mover_short", "mover_cb_count", "writers_collide")
MUTATIONS = SITE_MUTATIONS + OTHER_MUTATIONS

# (template, what it exercises); {x} a block in scope, {m} a matrix block, {cb} an input CB
UNSUPPORTED: list[tuple[list[str], str]] = [
    (["while False:", "    pass"], "While"),
    (["try:", "    pass", "except Exception:", "    pass"], "Try"),
    (["bad = lambda v: v"], "Lambda"),
    (["bad = [q for q in range(2)]"], "ListComp"),
    (["bad = {{1: 2}}"], "Dict"),
    (["bad = {{1, 2}}"], "Set"),
    (["assert True"], "Assert"),
    (["import math"], "Import"),
    (["global g_bad"], "Global"),
    (["raise ValueError()"], "Raise"),
    (["bad = f'{{1}}'"], "JoinedStr"),
    (["for q in [1, 2]:", "    pass"], "range"),
    (["for q in range(0.5):", "    pass"], "integers"),
    (["def inner():", "    pass"], "FunctionDef"),
    (["class Bad:", "    pass"], "ClassDef"),
    (["bad = {x}[0]"], "indexed"),
    (["bad = {x} ** 0.5"], "integer"),
    (["bad = {x} // 2.0"], "FloorDiv"),
    (["bad = {x} @ 2.0"], "multiplies two blocks"),
    (["bad = {x} < {x} < {x}"], "chained"),
    (["bad = {x}.foo()"], "foo"),
    (["bad = nosuch + 1.0"], "nosuch"),
    (["bad = {x}.astype('f16')"], "f16"),
    (["bad = fill(1.0, (32, 48))"], "whole tiles"),
    (["bad = {m}.rowmax(dim=0)"], "dim"),
    (["bad = {x} * core_index(2)"], "core_index"),
    (["if {x} > 0.0:", "    pass"], "condition"),
    (["bad = {x}.exp(approx={x})"], "approx"),
    (["bad = where({x}, 1.0)"], "missing"),
    (["bad = fill(1.0, shape=(32, 32), dtyp='bf16')"], "dtyp"),
    (["return {x}"], "returns nothing"),
    (["bad = 1 / 0"], "division by zero"),
    (["print({x}, {x})"], "print"),
    (["bad = {x}.shape + 1"], "unsupported"),
    (["bad = dma({x}, {x})"], "dma"),
    (["bad, bad2 = {x}"], "names"),
    (["{cb}.push()"], "push"),
    (["bad = {cb}.foo()"], "foo"),
    (["bad = {cb} + 1"], "unsupported"),
    (["bad = {x} and {x}"], "condition"),
    (["with {x} as q:", "    pass"], "with"),
    (["with {cb}.wait() as q, {cb}.wait() as r:", "    pass"], "with"),
    (["{x}.store({x})"], "reserved"),
    (["bad = {x}.transpose().transpose().rowsum(dim=3)"], "dim"),
]


def mutate(g: Gen, prog: Program, kind: str) -> bool:
    """Apply mutation `kind` to `prog` (generated by `g`); False if this program offers no place for it."""
    prog.mutation = kind
    if kind in SITE_MUTATIONS:
        return mutate_at_site(g, prog, kind)
    if kind == "cb_count":
        names = [f"{a.name}_cb" for a in prog.args]
        prog.cb_params = names[:-1] if g.coin(50) else names + ["extra_cb"]
        return True
    if kind == "stream_const":
        explicit = [a for a in prog.inputs if a.mode != "implicit"]
        if not explicit:
            return False
        g.pick(explicit).bad_index = True
        return True
    if kind in ("stream_runtime", "mover_extra", "mover_short", "mover_cb_count", "writers_collide"):
        movers = [a for a in prog.args if a.mode != "implicit"]
        if kind == "stream_runtime":
            movers = [a for a in movers if a.mode != "shared"]
        if kind == "writers_collide":  # every core writes the same output blocks
            movers = [a for a in movers if a.output and prog.grid != (1, 1)]
        if kind == "mover_short":
            movers = [a for a in movers if a.count > 1 or a.output]
        if not movers:
            return False
        a = g.pick(movers)
        if kind == "stream_runtime":
            a.bad_runtime_index = True
        elif kind == "mover_extra":
            a.count_delta = 1
        elif kind == "mover_short":
            a.count_delta = -1
        elif kind == "mover_cb_count":
            a.bad_params = True
        else:
            a.mode = "shared"
        return True
    if kind == "float64_input":
        prog.float64_input = g.integer(0, len(prog.inputs) - 1)
        prog.mark_kernel = True
        return True
    if kind == "ragged_input":
        prog.ragged_input = g.integer(0, len(prog.inputs) - 1)
        prog.mark_kernel = True
        return True
    stores = list(walk_stores(prog.body))
    if not stores:
        return False
    lst, i, in_if = g.pick(stores)
    st_ = lst[i]
    assert isinstance(st_, StoreInto)
    if kind == "never_written":
        if st_.target is None:
            del lst[i]
        else:
            return remove_reserve_and_store(prog.body, st_)
        return True
    if kind == "unfilled":  # (a store in one branch only would be fine on a path that skips it)
        if st_.target is None or in_if:
            return False
        del lst[i]
        return True
    if kind == "store_twice":
        if st_.target is None:
            return False
        again = Raw([f"{st_.target}.store({st_.expr.src()})"])
        lst.insert(i + 1, again)
        prog.mark = again
        return True
    if kind == "extra_store":
        if in_if:
            return False
        again = Raw([f"out_cb.reserve().store({st_.expr.src()})"], None)
        lst.insert(i + 1, again)
        return True
    if kind == "compute_pops_output":
        if prog.out.mode == "implicit":
            return False
        bad = Raw(["out_cb.pop()"])
        lst.insert(i + 1, bad)
        prog.mark = bad
        return True
    if kind == "read_own_output":
        if prog.out.mode != "implicit":
            return False
        bad = Raw(["bad = out_cb.pop()", "bad2 = bad + 1.0"])
        lst.insert(i + 1, bad)
        prog.mark = bad
        return True
    raise AssertionError(kind)


def walk_stores(stmts: list[Stmt], in_if: bool = False):
    """(statement list, index, inside an `if` branch) of every store."""
    for i, s in enumerate(stmts):
        if isinstance(s, StoreInto):
            yield stmts, i, in_if
        for attr in ("body", "orelse"):
            inner = getattr(s, attr, None)
            if isinstance(inner, list):
                yield from walk_stores(inner, in_if or isinstance(s, If))


def remove_reserve_and_store(stmts: list[Stmt], store: StoreInto) -> bool:
    for i, s in enumerate(stmts):
        if isinstance(s, WithReserve) and store in s.body:
            del stmts[i]
            return True
        if isinstance(s, Reserve) and s.name == store.target:
            rest = stmts[i + 1:]
            if any(isinstance(r, If) and any(store in b for b in (r.body, r.orelse)) for r in rest):
                return False  # a store in each branch: leave those
            del stmts[i]
            stmts.remove(store)
            return True
        for attr in ("body", "orelse"):
            inner = getattr(s, attr, None)
            if isinstance(inner, list) and remove_reserve_and_store(inner, store):
                return True
    return False


def mutate_at_site(g: Gen, prog: Program, kind: str) -> bool:
    sites = list(g.sites)
    if kind == "use_after_release":
        sites = [s for s in sites if s.released]
    elif kind == "loop_local_after":
        sites = [s for s in sites if s.loop_locals]
    elif kind == "carried_shape":
        sites = [s for s in sites if s.end_of_loop and s.outer]
    elif kind in ("extra_pop",):
        sites = [s for s in sites if not s.in_if]
    elif kind in ("runtime_div_by_zero", "runtime_mod_by_zero"):
        sites = [s for s in sites if any(v.t == "int" for v in s.env.values())] or sites
    if not sites:
        return False
    site = g.pick(sites)
    blocks = [n for n, s in site.env.items() if isinstance(s.t, BT)]
    mats = [n for n in blocks if site.env[n].t.shape[0] > 1 and site.env[n].t.shape[1] > 1]
    x = g.pick(blocks) if blocks else "fill(1.0, (32, 32))"
    m = g.pick(mats) if mats else "fill(1.0, (32, 32))"
    mshape = site.env[m].t.shape if mats else (32, 32)
    cb = f"{g.pick(prog.inputs).name}_cb"
    if kind == "shape_mismatch":
        lines = [f"bad = {m} + fill(1.0, ({mshape[0] + 32}, {mshape[1] + 32}))"]
    elif kind == "matmul_inner":
        lines = [f"bad = {m} @ fill(1.0, ({mshape[1] + 32}, 32))"]
    elif kind == "use_after_release":
        lines = [f"bad = {g.pick(site.released)} + 1.0"]
    elif kind == "loop_local_after":
        lines = [f"bad = {g.pick(site.loop_locals)} * 2.0"]
    elif kind == "read_reserved":
        lines = ["bad_o = out_cb.reserve()", "bad = bad_o * 2.0"]
    elif kind == "unsupported":
        template, _words = g.pick(UNSUPPORTED)
        if any(t.strip() in ("break", "continue") for t in template) and not site.in_loop:
            return False
        lines = [t.format(x=x, m=m, cb=cb) for t in template]
    elif kind == "extra_pop":
        lines = [f"bad = {cb}.pop()"]
    elif kind == "carried_shape":
        n = g.pick(site.outer)
        lines = [f"{n} = {n}.rowsum()"]
    elif kind == "one_branch":
        lines = ["if core_index(0) == 0:", f"    bad_n = {x} + 1.0", "bad = bad_n * 2.0"]
    elif kind == "store_wrong_shape":
        r, c = prog.out.bshape
        lines = ["bad_o = out_cb.reserve()", f"bad_o.store(fill(1.0, ({r + 32}, {c})))"]
    elif kind == "compute_fills_input":  # a second producer for a CB the implicit reader fills
        implicit = [a for a in prog.inputs if a.mode == "implicit"]
        if not implicit:
            return False
        a = g.pick(implicit)
        lines = [f"{a.name}_cb.reserve().store(fill(1.0, ({a.bshape[0]}, {a.bshape[1]})))"]
    elif kind in ("runtime_div_by_zero", "runtime_mod_by_zero"):
        ints = [n for n, s in site.env.items() if s.t == "int"] or ["core_index(0)"]
        op = "//" if kind == "runtime_div_by_zero" else "%"
        lines = [f"bad = {x} * ({g.pick(ints)} {op} 0)"]
    else:
        raise AssertionError(kind)
    mark = {"read_reserved": 1, "one_branch": 2, "store_wrong_shape": 1, "extra_pop": None}.get(kind, 0)
    raw = Raw(lines, mark)
    site.stmts.insert(site.index, raw)
    if mark is not None:
        prog.mark = raw
    return True


# ---- strategies -------------------------------------------------------------------------------


@st.composite
def programs(draw: Any, bugs: frozenset[str] | None = None) -> Program:
    """A valid kernel: its description, rendered source and the known bugs it avoids."""
    bugs = frozenset(KNOWN_BUGS) if bugs is None else bugs
    g = Gen(draw, bugs)
    prog = g.program()
    prog.render()
    return prog


@st.composite
def invalid_programs(draw: Any, kinds: tuple[str, ...] | None = None) -> Program:
    """A kernel with one mistake from MUTATIONS (those of KNOWN_BUGS excepted unless named)."""
    kinds = kinds or tuple(k for k in MUTATIONS if k not in KNOWN_BUGS)
    kind = draw(st.sampled_from(kinds + ("unsupported",) * 3 if "unsupported" in kinds else kinds))
    g = Gen(draw, frozenset(KNOWN_BUGS))
    prog = g.program()
    if not mutate(g, prog, kind):
        from hypothesis import assume

        assume(False)
    prog.render()
    return prog
