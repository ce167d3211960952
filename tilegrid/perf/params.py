"""One parameter set per device for the timing model; every number names its source.

Sources are the public figures collected in `shared/anchors/wormhole.md` (cited below as
"anchors §N", with the primary source the anchors file gives) and, for the SDPA comparison
only, `shared/anchors/tt_metal_sdpa.md`. No constant here was measured inside SDPA or fitted to
a point the benchmarks compare against: the SDPA-calibrated figures in the anchors (polaris
`roofline_sdpa.py`, issue #55760) are deliberately NOT used. Where no public figure exists the
value would be marked ESTIMATE (none is, now).

Grid mapping. tilegrid writes grids as (rows, cols); tt-metal writes "x by y" = cols by rows.
- Wormhole n150, tilegrid (8, 8) = tt-metal 8x8: row r -> NoC y, col c -> NoC x.
- Wormhole 80-core die, tilegrid (8, 10) (the roadmap's grid): the physical Tensix array is 8
  columns by 10 rows (a 10x12 NoC grid, DRAM at x = 0 and 5), so tilegrid's 8 rows map onto the
  8 physical columns and its 10 columns onto the 10 physical rows (a transpose): row r -> NoC x,
  col c -> NoC y. A tilegrid "row" multicast then runs down a physical column; cost is the same.
- Blackhole p100a, tilegrid (10, 11) = tt-metal 11x10 (x by y): row r -> NoC y, col c -> NoC x.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain

FIDELITY_PHASES = {"LoFi": 1, "HiFi2": 2, "HiFi3": 3, "HiFi4": 4}

# Bytes of one 32x32 tile in L1 / DRAM (anchors §3 "Tile sizes in L1": bf16 2048, bfp8_b 1088,
# bfp4_b 576, fp32 4096; bfp8_b = 16 datums share one exponent).
TILE_BYTES = {"bf16": 2048, "f32": 4096, "bfp8_b": 1088, "bfp4_b": 576}

# Where each number comes from (anchors section and the primary source it quotes).
SOURCES: dict[str, str] = {
    "clock_ghz": "anchors §1: WH 'AI Clock 1 GHz' (SPEC-WH, ISA MatrixUnit.md); BH 'Up to 1.35 GHz' (SPEC-BH)",
    "matmul_cycles_per_tile": "anchors §2: GEMM_FLOPS.md 'LoFi: 16, HiFi2: 32, HiFi3: 48, HiFi4: 64' cycles per "
                              "32x32x32 tile MAC (8x16 @ 16x16 per cycle, 5b x 7b multipliers, one pass per phase)",
    "fpu_eltwise_cycles_per_tile": "anchors §2: matrix_engine.md eltwise 8x16 per cycle -> 1024/128 = 8 cycles per "
                                   "tile (derived); a multiply repeats per fidelity phase",
    "fpu_reduce_cycles_per_tile": "anchors §2: matrix_engine.md reduce 16x16 per cycle -> 1024/256 = 4 cycles per "
                                  "tile (derived); max ignores fidelity, sum repeats per phase",
    "sfpu_cycles_per_instr_tile": "anchors §3: 'one tile is 32 SFPU vector ops, so the floor is 32' (PR #55801, "
                                  "ISA SFPLOAD.md); an SFPU op of n instructions per vector costs 32n per tile",
    "sfpu_exp_accurate": "anchors §3: WH accurate bf16 exp 1161 cycles/tile (PR #32968 exp_21f); BH accurate 672 "
                         "(PR #29495)",
    "sfpu_exp_approx": "tt-llk PR #1190 'baseline' fast approx exp (exp_tile<true, true> with its default input "
                       "clamping: 3 SFPLOADMACRO-issued instructions per vector, 96-cycle issue bound): WH 106.7, BH 104.5 "
                       "cycles/tile. (#1190's 70.7 / 68.6 variant drops the clamp and is only valid for x <= 0.72.)",
    "sfpu_recip": "anchors §3: BH SFPLOADMACRO recip FP32 5 cycles per 32 datums = 160 cycles/tile (tt-llk#834); "
                  "WH unconfirmed, the BH figure is used",
    "unpack_bytes_per_cycle": "anchors §3: per unpacker up to 64 B/cycle (x4), both jointly <= 80 B/cycle "
                              "(ISA UNPACR_Regular.md, L1.md)",
    "pack_bytes_per_cycle": "anchors §3: 4 packers x 128-bit = 64 B/cycle (ISA L1.md 'Packers')",
    "noc_bytes_per_cycle": "anchors §5: flit 256 bits = 32 B per cycle per link (WH); 512 bits = 64 B (BH) "
                           "(ISA NoC/README.md)",
    "noc_hop_cycles": "anchors §5: router-to-router 9 cycles per hop (ISA NoC/README.md)",
    "noc_niu_cycles": "anchors §5: NIU <-> router about 5 cycles (ISA NoC/README.md)",
    "dram_channels": "anchors §6: WH 12 GDDR6 channels (ISA DRAMTile/README.md); BH 8 channels (tt-system-firmware)",
    "dram_bytes_per_cycle_per_channel": "anchors §6: WH 24 GB/s per channel (12 x 24 = 288 GB/s) at 1 GHz = 24 "
                                        "B/cycle; BH p100a 448 GB/s / 8 channels / 1.35 GHz = 41.5 B/cycle (derived)",
    "l1_bytes": "anchors §4: WH 1464 KiB (dev_mem_map.h), BH 1536 KiB; less 32 KiB firmware reserve (tilegrid Device)",
    "dst_tiles_16bit": "anchors §4: Dst 1024 rows x 16 cols x 16 bit = 16 tiles (ISA Dst.md)",
    "dram_latency_cycles": "derived from tt-metal tests/tt_metal/tt_metal/data_movement/noc_estimator/"
                           "noc_latencies.yaml [1fc91107] (the data-movement test suite's measurements): one 64 B DRAM "
                           "transaction (memory: 1, pattern: 0), issue to barrier, 381 cycles WH / 486 BH (arch 3); less "
                           "this model's issue cost (49), the 64 B transfer (2 / 1) and its one-way NoC leg for a 4-hop "
                           "route (5 + 4 x 9 + 5 = 46): WH 284, BH 390",
    "dma_issue_cycles": "tt-metal profile_scripts/compute_perf_model.sh [ad33ecbb]: tt-metal's analytical model "
                        "run with '--read-issue-latency 49 --write-issue-latency 43', Grayskull measurements of the "
                        "same baby RISC-V + NIU command path (perf_model.sh); no WH/BH figure is published: 49",
    "cb_sync_cycles": "lower bound from ISA load latencies (tt-isa-documentation WormholeB0/TensixTile/BabyRISCV "
                      "[04fca466]: '>= 7' cycles from NoC overlay registers, '>= 8' from L1): a CB call reads the CB's "
                      "tile counter and its L1 interface state, 7 + 8 = 15",
    "op_overhead_cycles": "per op invocation, the unpack -> math -> pack pipeline's fill: tt-llk issue #316 "
                          "(BH, tt-metal device profiler, eltwise add, unpacker start to packer end): 178.88 cycles "
                          "for 1 tile, 4 x 86.06 = 344.24 for 4, i.e. 55.1 per tile + 124 per op (derived). "
                          "Blackhole's figure, used for Wormhole too (the same Tensix pipeline)",
}


@dataclass(frozen=True)
class DeviceParams:
    """Timing parameters of one chip (see SOURCES for each field's origin)."""

    name: str
    arch: str  # "wormhole" | "blackhole"
    grid: tuple[int, int]  # tilegrid (rows, cols)
    transpose_grid: bool  # tilegrid row -> NoC x (see the module docstring)
    noc_size: tuple[int, int]  # NoC grid (x, y) incl. DRAM / Ethernet / PCIe tiles
    tensix_x: tuple[int, ...]  # NoC x coordinates of the Tensix columns in use
    tensix_y: tuple[int, ...]
    dram_xy: tuple[tuple[int, int], ...]  # one NoC endpoint per DRAM channel
    clock_ghz: float
    l1_bytes: int
    dst_tiles_16bit: int = 16
    matmul_cycles_per_tile: dict[str, int] = field(
        default_factory=lambda: {"LoFi": 16, "HiFi2": 32, "HiFi3": 48, "HiFi4": 64})
    fpu_eltwise_cycles_per_tile: int = 8
    fpu_reduce_cycles_per_tile: int = 4
    sfpu_cycles_per_instr_tile: int = 32
    sfpu_exp_accurate: float = 1161.0
    sfpu_exp_approx: float = 106.7
    sfpu_recip: float = 160.0
    unpack_bytes_per_cycle: float = 64.0  # one unpacker
    unpack_joint_bytes_per_cycle: float = 80.0  # both unpackers together
    pack_bytes_per_cycle: float = 64.0
    noc_bytes_per_cycle: float = 32.0  # per NoC, per direction, per endpoint
    noc_hop_cycles: int = 9
    noc_niu_cycles: int = 5
    dram_channels: int = 12
    dram_bytes_per_cycle_per_channel: float = 24.0
    dram_latency_cycles: int = 284
    dma_issue_cycles: int = 49
    cb_sync_cycles: int = 15
    op_overhead_cycles: int = 124

    # ---- derived -------------------------------------------------------------------------------

    @property
    def cores(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def dram_bytes_per_cycle(self) -> float:
        return self.dram_channels * self.dram_bytes_per_cycle_per_channel

    @property
    def dram_gbps(self) -> float:
        return self.dram_bytes_per_cycle * self.clock_ghz

    def peak_flops_per_core(self, fidelity: str) -> float:
        """FLOP/s of one core's matrix unit at a fidelity: 2*32^3 FLOP per tile MAC."""
        return 2 * 32**3 / self.matmul_cycles_per_tile[fidelity] * self.clock_ghz * 1e9

    def peak_tflops(self, fidelity: str, cores: int | None = None) -> float:
        return self.peak_flops_per_core(fidelity) * (cores or self.cores) / 1e12

    def noc_xy(self, r: int, c: int) -> tuple[int, int]:
        """NoC coordinates of tilegrid core (r, c) (see the module docstring)."""
        if self.transpose_grid:
            return self.tensix_x[r % len(self.tensix_x)], self.tensix_y[c % len(self.tensix_y)]
        return self.tensix_x[c % len(self.tensix_x)], self.tensix_y[r % len(self.tensix_y)]

    def route(self, a: tuple[int, int], b: tuple[int, int], noc: int) -> tuple[Link, ...]:
        """The links a packet crosses from NoC coordinate a to b (see `noc_route`)."""
        return noc_route(self.noc_size, a, b, noc)

    def dram_legs(self, here: tuple[int, int], noc: int, kind: str, chans: tuple[int, ...]
                  ) -> tuple[tuple[tuple[Link, int], ...], float]:
        """The NoC links a DRAM transfer of core `here` crosses over DRAM channels `chans`, each with
        the number of channel routes through it (data flows from the channel to the core for reads,
        the other way for writes), and the latency of its slowest leg (see `dram_legs`)."""
        return dram_legs(self.noc_size, self.dram_xy, self.noc_hop_cycles, self.noc_niu_cycles, here, noc, kind, chans)

    def describe(self) -> str:
        gr, gc = self.grid
        how = ("tilegrid rows -> NoC x (physical columns), cols -> NoC y" if self.transpose_grid
               else "tilegrid rows -> NoC y, cols -> NoC x")
        return (f"{self.name}: {gr}x{gc} tilegrid grid (rows x cols) = tt-metal {gc if not self.transpose_grid else gr}"
                f"x{gr if not self.transpose_grid else gc} (x by y); {how}; {self.clock_ghz} GHz; "
                f"DRAM {self.dram_channels} ch x {self.dram_bytes_per_cycle_per_channel:.1f} B/cycle = "
                f"{self.dram_gbps:.0f} GB/s; NoC {self.noc_bytes_per_cycle:.0f} B/cycle per link")


Link = tuple[int, int, int, str]  # (noc, x, y, direction leaving router (x, y))


@lru_cache(maxsize=65536)
def noc_route(size: tuple[int, int], a: tuple[int, int], b: tuple[int, int], noc: int) -> tuple[Link, ...]:
    """Links from NoC coordinate a to b. Each NoC is a unidirectional torus: NoC 0 carries data
    rightwards and downwards, a packet travelling right, then turning down; NoC 1 upwards, then
    leftwards (tt-isa-documentation NoC 'Routing Paths', both chips). Read responses take the
    request's NoC, from the data's source to the reader."""
    nx, ny = size
    x, y = a
    links: list[Link] = []
    if noc == 0:
        while x != b[0]:
            links.append((0, x, y, "E"))
            x = (x + 1) % nx
        while y != b[1]:
            links.append((0, x, y, "S"))
            y = (y + 1) % ny
    else:
        while y != b[1]:
            links.append((1, x, y, "N"))
            y = (y - 1) % ny
        while x != b[0]:
            links.append((1, x, y, "W"))
            x = (x - 1) % nx
    return tuple(links)


@lru_cache(maxsize=65536)
def dram_legs(size: tuple[int, int], dram_xy: tuple[tuple[int, int], ...], hop: int, niu: int, here: tuple[int, int],
              noc: int, kind: str, chans: tuple[int, ...]) -> tuple[tuple[tuple[Link, int], ...], float]:
    """`DeviceParams.dram_legs`, cached on what it depends on (the timing model and its bounds ask
    for the same patterns over and over). The request's own leg is part of dram_latency_cycles."""
    routes = [noc_route(size, dram_xy[ch], here, noc) if kind == "dram_read" else noc_route(size, here, dram_xy[ch], noc)
              for ch in chans]
    return tuple(Counter(chain.from_iterable(routes)).items()), float(2 * niu + hop * max(map(len, routes)))


# Wormhole: 10x12 NoC; DRAM tiles in columns x = 0 and x = 5 (ISA WormholeB0/DRAMTile: 18 DRAM
# tiles in 6 groups of 3, each group 2 channels); Tensix columns x = 1-4, 6-9, rows y = 1-5, 7-11.
_WH_X = (1, 2, 3, 4, 6, 7, 8, 9)
_WH_Y = (1, 2, 3, 4, 5, 7, 8, 9, 10, 11)
_WH_DRAM = tuple((0 if ch < 6 else 5, (0, 2, 4, 6, 8, 10)[ch % 6]) for ch in range(12))

WORMHOLE_N150 = DeviceParams(
    name="wormhole_n150", arch="wormhole", grid=(8, 8), transpose_grid=False, noc_size=(10, 12),
    tensix_x=_WH_X, tensix_y=_WH_Y[:8], dram_xy=_WH_DRAM, clock_ghz=1.0, l1_bytes=1432 * 1024,
)
WORMHOLE_80 = DeviceParams(
    name="wormhole_b0", arch="wormhole", grid=(8, 10), transpose_grid=True, noc_size=(10, 12),
    tensix_x=_WH_X, tensix_y=_WH_Y, dram_xy=_WH_DRAM, clock_ghz=1.0, l1_bytes=1432 * 1024,
)
# Blackhole: 17x12 NoC, DRAM columns x = 0 and x = 9 (8 channels), Tensix x = 1-7, 10-16 with two
# columns harvested on p100a (11 usable), rows y = 2-11 (anchors §1: 11x10 compute grid).
_BH_X = (1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13)
_BH_Y = (2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
_BH_DRAM = tuple((0 if ch < 4 else 9, (0, 3, 6, 9)[ch % 4]) for ch in range(8))

BLACKHOLE_P100A = DeviceParams(
    name="blackhole_p100a", arch="blackhole", grid=(10, 11), transpose_grid=False, noc_size=(17, 12),
    tensix_x=_BH_X, tensix_y=_BH_Y, dram_xy=_BH_DRAM, clock_ghz=1.35, l1_bytes=1504 * 1024,
    sfpu_exp_accurate=672.0, sfpu_exp_approx=104.5, dram_latency_cycles=390, noc_bytes_per_cycle=64.0, dram_channels=8,
    dram_bytes_per_cycle_per_channel=448.0 / 8 / 1.35,
)

PARAMS: dict[str, DeviceParams] = {p.name: p for p in (WORMHOLE_N150, WORMHOLE_80, BLACKHOLE_P100A)}


def params_for(device_name: str) -> DeviceParams:
    """The parameter set of a tilegrid Device (by its name)."""
    try:
        return PARAMS[device_name]
    except KeyError:
        raise KeyError(f"no timing parameters for device '{device_name}'; known: {sorted(PARAMS)}") from None
