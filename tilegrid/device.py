"""Descriptions of the chips tilegrid compiles for: grid, L1 and DST."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Device:
    """A Tensix chip as a kernel sees it.

    grid: (rows, cols) of worker cores (tt-metal writes "x by y", i.e. cols by rows).
    l1_bytes: L1 per core available to CBs and buffers.
    dst_tiles_16bit: physical DST capacity in 16-bit tiles (16 on Wormhole and Blackhole).
    """

    name: str
    grid: tuple[int, int]
    l1_bytes: int
    dst_tiles_16bit: int = 16

    def dst_capacity(self, fp32_acc: bool = True, double_buffer: bool = True) -> int:
        """DST tiles a subblock may use: halved when double-buffered, halved again for fp32."""
        cap = self.dst_tiles_16bit
        if double_buffer:
            cap //= 2
        if fp32_acc:
            cap //= 2
        return cap


# Wormhole B0, the full 80-core die (8 rows of 10); 1464 KiB L1 less 32 KiB firmware
# reserve = 1432 KiB (anchors/wormhole.md, section 4).
WORMHOLE = Device("wormhole_b0", (8, 10), 1432 * 1024)
# Wormhole n150 as tt-metal exposes it: an 8x8 compute grid.
WORMHOLE_N150 = Device("wormhole_n150", (8, 8), 1432 * 1024)
# Blackhole p100a: tt-metal's 11x10 (x by y) = 10 rows of 11; 1536 KiB L1 less 32 KiB.
BLACKHOLE_P100A = Device("blackhole_p100a", (10, 11), 1504 * 1024)

DEVICES = {d.name: d for d in (WORMHOLE, WORMHOLE_N150, BLACKHOLE_P100A)}
