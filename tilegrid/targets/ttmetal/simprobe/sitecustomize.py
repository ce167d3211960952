"""tilegrid's probe inside the wolfpine simulator process: per-tile, per-unit counters from wolfpine's event bus.

host.py puts this directory on PYTHONPATH and sets TILEGRID_SIMPROBE_DIR before it opens the device; tt-metal's UMD
starts the simulator (wolfpine's run.sh, a child process with that environment), and Python imports this
`sitecustomize` at start-up.  It does nothing in any other process (it requires UMD's NNG_SOCKET_ADDR).

Why: wolfpine publishes what its cost model charges (Tensix unit occupancy, Tensix thread stalls, NoC flights) on an
in-process event bus; its own consumers (TT_SIM_PROFILE, TT_SIM_TRACE_COUNTERS) write reports when the simulator exits
or as datasets with no program boundaries, while tilegrid's server keeps one simulator for many programs.  This probe
keeps running totals and writes a snapshot whenever host.py asks (request file `req-N` -> reply `snap-N.json`), so
host.py can subtract the snapshots taken before and after one program.  Only the COMPUTE, STALL and NOC event
categories are listened to, and the bus is enabled only between the two snapshots of a program that asked for
counters: an enabled bus slows wolfpine about 4x (measured here), whatever listens.

Counter keys: "TILE,UNIT,name": TILE is noc0:x:y for a Tensix tile, unified:x:y (wolfpine's coordinates) otherwise;
unit names are wolfpine's (MATRIX, SFPU, PACKER, UNPACKER, ...
for Tensix backend units; TRISC0-2 for stalls; NOC0/NOC1 for NoC).  Names: ops, busy_cycles (modelled occupancy,
TT_SIM_COST_MODEL=1 only), stall_cycles and stall_<reason>, noc_txns, noc_bytes, noc_flight_cycles.
Written by tilegrid; not part of wolfpine.
"""

import os


def _install(directory: str) -> None:
    import json
    import threading
    import time
    from collections import defaultdict

    from framework.device.wormhole import Wormhole
    from framework.trace.bus import get_bus
    from framework.trace.events import EventCategory

    counters: dict[str, int] = defaultdict(int)
    tiles: dict[tuple, str] = {}

    def tile(ux: int, uy: int) -> str:
        """Tensix tiles by their physical NoC-0 coordinate (what tt-metal's logical->NoC translation gives with
        translation off, as in wolfpine); any other tile (DRAM, ...) by wolfpine's unified coordinate."""
        name = tiles.get((ux, uy))
        if name is None:
            try:
                px, py = Wormhole.physical_noc0_coord_from_unified_worker((ux, uy))
                name = f"noc0:{px}:{py}"
            except ValueError:
                name = f"unified:{ux}:{uy}"
            tiles[(ux, uy)] = name
        return name

    def key(e, name: str) -> str:
        uid = e.unit_id
        return f"{tile(uid[2], uid[1])},{getattr(uid[3], 'name', uid[3])},{name}"

    def on_compute(e) -> None:
        counters[key(e, "ops")] += 1
        if e.duration:
            counters[key(e, "busy_cycles")] += e.duration

    def on_stall(e) -> None:
        counters[key(e, "stall_cycles")] += e.cycles
        counters[key(e, f"stall_{e.reason}")] += e.cycles

    def on_noc(e) -> None:
        if e.phase == "response":
            counters[key(e, "noc_bytes")] += e.size_bytes
        counters[key(e, f"noc_{e.phase}")] += 1
        if e.issue_cycle >= 0:
            counters[key(e, "noc_flight_cycles")] += max(0, e.cycle - e.issue_cycle)

    bus = get_bus()
    wanted = {EventCategory.COMPUTE: on_compute, EventCategory.STALL: on_stall, EventCategory.NOC: on_noc}
    owner = not bus.enabled  # nobody else (TT_SIM_TRACE_*, TT_SIM_PROFILE) uses the bus: we switch it on and off
    if owner:
        for cat in EventCategory:
            bus.set_category_enabled(cat, cat in wanted)
    for cat, fn in wanted.items():
        bus.set_category_enabled(cat, True)
        bus.subscribe(cat, fn)

    def serve() -> None:
        while True:
            try:
                reqs = [n for n in os.listdir(directory) if n.startswith("req-")]
            except OSError:
                return
            for name in reqs:
                seq = name[4:]
                try:
                    with open(os.path.join(directory, name)) as f:
                        switch = f.read().strip()
                except OSError:
                    switch = ""
                for _ in range(10):
                    try:
                        snap = dict(counters)
                        break
                    except RuntimeError:  # the simulator thread added a key mid-copy
                        continue
                tmp = os.path.join(directory, f".snap-{seq}.tmp")
                with open(tmp, "w") as f:
                    json.dump({"t": time.time(), "counters": snap}, f)
                if owner and switch in ("on", "off"):
                    # An enabled bus makes wolfpine's hot paths slower (about 4x here, even for categories nobody
                    # listens to), so it is on only while host.py measures a program.  The simulator is idle then:
                    # host.py switches between programs, while it waits for this reply.
                    bus.enabled = switch == "on"
                os.replace(tmp, os.path.join(directory, f"snap-{seq}.json"))
                try:
                    os.unlink(os.path.join(directory, name))
                except OSError:
                    pass
            time.sleep(0.004)

    threading.Thread(target=serve, name="tilegrid-simprobe", daemon=True).start()


_DIR = os.environ.get("TILEGRID_SIMPROBE_DIR")
if _DIR and os.environ.get("NNG_SOCKET_ADDR"):
    try:
        _install(_DIR)
    except Exception as _e:  # never break the simulator over a probe
        import sys

        print(f"[tilegrid-simprobe] disabled: {type(_e).__name__}: {_e}", file=sys.stderr)
