"""Which tt-metal circular buffer holds what: the kernel's CBs, the compute thread's buffers, and the
two small CBs the generated kernels add.

- CB `i` is tensor argument `i`'s CB, sized as allocate-l1 sized it (depth x block), one page a tile.
- The compute thread's intermediate buffers (`tilegrid.alloc`) live where allocate-l1 put them, in
  one area of its size: one tt-metal CB ("the buffer area") whose pages are tiles, with one CB index
  per data format sharing its memory; a buffer is a run of pages at its offset / tile size. A packer
  writes it with `pack_tile<true>` at that page; the unpacker reads it the same way (the area's
  pointers never move).
- A fp32 buffer area has one more alias for the unpacker: with an fp32 DST, a copy into DST unpacks
  it straight into DST (UnpackToDestFp32), as tt-metal's matmul reloads its fp32 partials; the
  source registers of the other ops hold only 19 bits (TF32).
- `sync`: the packer pushes one page after it wrote a buffer, the unpacker waits for it before it
  reads one: the packer and the unpacker are different RISC-Vs, and CBs are how they synchronise.
- `scaler`: the tile `reduce_tile` scales by (1.0 in the first row of each face), written once by a
  data-movement kernel.
- `index`: for `row_index` / `col_index` (tile.iota), fp32 tiles of each element's row index (one tile
  per tile row: 32 t + r), then of its column index, written once by a data-movement kernel; a copy
  into DST is the iota.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tilegrid.errors import CompileError
from tilegrid.ir import core as C
from tilegrid.ir import tile as T
from tilegrid.passes.allocate_l1 import TILE_BYTES, block_bytes, plan_l1, used_cbs
from tilegrid.passes.common import loc_of

MAX_CBS = 32  # circular buffer indices per core (Wormhole)
SYNC_PAGE = 32  # bytes of a sync CB page (nothing is ever written there)


@dataclass
class CBSpec:
    """One tt-metal CB (one allocation): its indices (aliases sharing the memory, one per format) and size."""

    name: str  # the C++ constant of its first index
    total_size: int
    formats: list[tuple[int, str, int]]  # (CB index, format, page size)
    purpose: str
    unpack_to_dest: list[int] = field(default_factory=list)  # indices the unpacker moves straight to DST (fp32)

    def host(self) -> dict:
        """This CB in the device server's request format (host.py)."""
        if len(self.formats) == 1:
            index, fmt, page = self.formats[0]
            return {"index": index, "total_size": self.total_size, "page_size": page, "format": fmt}
        return {"total_size": self.total_size,
                "formats": [{"index": i, "format": f, "page_size": p} for i, f, p in self.formats]}


@dataclass
class Layout:
    """Every CB of the program, and where each buffer of the compute thread lives."""

    cbs: list[CBSpec]
    arg_cb: dict[int, str]  # tensor argument -> its CB constant
    area: dict[str, str]  # format -> CB constant of the compute thread's buffer area (as that format)
    area_dest: str | None  # the fp32 area alias that copies unpack straight into DST
    area_start: int  # the area's first byte in allocate-l1's layout (buffer offsets are relative to it)
    sync: str | None
    scaler: str | None
    constants: dict[str, int] = field(default_factory=dict)  # C++ name -> CB index
    index: str | None = None
    index_rows: int = 0  # row-index tiles first, then `index_cols` column-index tiles
    index_cols: int = 0

    def format_view(self) -> str:
        """An fp32 CB to configure a source register's format with (a bf16 kernel's DST operand of a
        dest-reuse op keeps 19 bits): an existing one, else a one-tile CB added for that."""
        for cb in self.cbs:
            for idx, fmt, _ in cb.formats:
                name = next(n for n, i in self.constants.items() if i == idx)
                if fmt == "f32" and name not in (self.area_dest, self.index):
                    return name
        name = "cb_fp32_format"
        self.constants[name] = index = max(self.constants.values(), default=-1) + 1
        if index >= MAX_CBS:
            raise CompileError(f"the kernel needs more than {MAX_CBS} circular buffers per core (tt-metal's limit)")
        self.cbs.append(CBSpec(name, TILE_BYTES["f32"], [(index, "f32", TILE_BYTES["f32"])],
                               "fp32 format of the source register a DST operand moves to (no data)"))
        return name

    def buffer_page(self, alloc: C.AllocOp, offset: int) -> int:
        """The page (tile of the buffer's format) of the area at which a buffer placed at `offset` starts."""
        dtype = alloc.result.type.dtype
        rel = offset - self.area_start
        if rel % TILE_BYTES[dtype]:
            raise CompileError(f"internal: a {dtype} buffer at L1 offset {offset} is not aligned to its tile size",
                               loc_of(alloc))
        return rel // TILE_BYTES[dtype]


def plan(prog: C.ProgramOp, module, fp32_dest: bool) -> Layout:
    """The CBs of a compiled (tile IR) program."""
    infos = prog.arg_infos()
    used = used_cbs(prog)
    cbs: list[CBSpec] = []
    arg_cb: dict[int, str] = {}
    constants: dict[str, int] = {}
    taken: set[str] = set()

    def cname(base: str) -> str:
        name = "cb_" + "".join(ch if ch.isalnum() else "_" for ch in base)
        while name in taken:
            name += "_"
        taken.add(name)
        return name

    for i, info in enumerate(infos):
        if i not in used:
            continue
        t = C.BlockType((32 * info["block"][0], 32 * info["block"][1]), info["dtype"])
        name = cname(info["name"])
        arg_cb[i] = name
        constants[name] = i
        r, c = info["block"]
        cbs.append(CBSpec(name, info["depth"] * block_bytes(t), [(i, info["dtype"], TILE_BYTES[info["dtype"]])],
                          f"'{info['name']}': {info['depth']} x {r}x{c} tiles {info['dtype']}"))
    next_index = len(infos)

    def index() -> int:
        nonlocal next_index
        if next_index >= MAX_CBS:
            raise CompileError(f"the kernel needs more than {MAX_CBS} circular buffers per core (tt-metal's limit)",
                               note="use fewer tensor arguments")
        next_index += 1
        return next_index - 1

    l1 = plan_l1(module)
    compute = [t for t in prog.threads if t.kind.data == "compute"]
    area: dict[str, str] = {}
    area_dest = None
    start = sum(b for _, b in l1.cbs)
    area_start = 0
    for thread, peak in l1.areas:
        if compute and thread == compute[0].thread_name.data:
            area_start = start
            allocs = [o for o in compute[0].walk() if isinstance(o, C.AllocOp)]
            formats = sorted({a.result.type.dtype for a in allocs})
            size = peak + (-peak % 4096 if "f32" in formats else 0)  # a whole number of pages of each format
            fmts = []
            for f in formats:
                name = cname(f"{thread}_buffers_{f}")
                area[f] = name
                constants[name] = index()
                fmts.append((constants[name], f, TILE_BYTES[f]))
            dest = []
            if fp32_dest and "f32" in formats:
                area_dest = cname(f"{thread}_buffers_f32_to_dst")
                constants[area_dest] = index()
                fmts.append((constants[area_dest], "f32", TILE_BYTES["f32"]))
                dest.append(constants[area_dest])
            cbs.append(CBSpec(area[formats[0]], size, fmts, f"thread '{thread}': its buffers ({peak} B, "
                              "placed by allocate-l1)", dest))
        start += peak
    for th in prog.threads:
        if th.kind.data != "compute" and any(isinstance(o, C.AllocOp) for o in th.walk()):
            o = next(o for o in th.walk() if isinstance(o, C.AllocOp))
            raise CompileError("the tt-metal target cannot hold a block buffer in a data-movement thread",
                               loc_of(o), note="compute on blocks in the compute thread")
    sync = scaler = None
    if area:
        sync = cname("sync")
        constants[sync] = index()
        cbs.append(CBSpec(sync, SYNC_PAGE, [(constants[sync], "bf16", SYNC_PAGE)],
                          "packer -> unpacker: a buffer was written (no data)"))
    if any(isinstance(o, T.ReduceOp) for th in compute for o in th.walk()):
        scaler = cname("reduce_scaler")
        constants[scaler] = index()
        cbs.append(CBSpec(scaler, TILE_BYTES["bf16"], [(constants[scaler], "bf16", TILE_BYTES["bf16"])],
                          "reduce_tile's scaler: 1.0 in the first row of each face"))
    iotas = [o for th in compute for o in th.walk() if isinstance(o, T.IotaOp)]
    rows = max((o.parent_op().outs[0].type.tiles[0] for o in iotas if o.dim.data == 0), default=0)
    cols = max((o.parent_op().outs[0].type.tiles[1] for o in iotas if o.dim.data == 1), default=0)
    index = None
    if iotas:
        index = cname("index_tiles")
        constants[index] = index_id = next_index
        next_index += 1
        cbs.append(CBSpec(index, (rows + cols) * TILE_BYTES["f32"], [(index_id, "f32", TILE_BYTES["f32"])],
                          f"row_index / col_index: {rows} tiles of row indices, then {cols} of column indices"))
    return Layout(cbs, arg_cb, area, area_dest, area_start, sync, scaler, constants, index, rows, cols)

