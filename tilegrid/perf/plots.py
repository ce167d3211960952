"""PNG plots of a timing-model run, readable from one core to a full 8x10 grid (needs matplotlib).

utilisation.png: per engine (FPU, SFPU, unpack, pack, the two data-movement threads), a heat map of
how busy each core was over the run, each cell labelled with its percentage, integer core indices.
timeline.png: the whole run, not its start: on top, every core's compute thread busy over time (one
row per core: load imbalance and tails show); below, every thread of three cores lane by lane (core
(0, 0), the core that finishes last, the least busy core): compute busy and DMAs in flight per time bin.
"""

from __future__ import annotations

import os
from typing import Any

UNITS = ("fpu", "sfpu", "unpack", "pack", "dm0", "dm1")
TITLES = {"fpu": "FPU", "sfpu": "SFPU", "unpack": "unpack", "pack": "pack", "dm0": "reader (dm0)",
          "dm1": "writer (dm1)"}


def _ticks(n: int) -> list[int]:
    step = 1 if n <= 12 else 2 if n <= 24 else max(1, n // 10)
    return list(range(0, n, step))


def utilisation(s: Any, path: str, plt: Any, np: Any) -> str:
    gr, gc = s.grid
    cell = 0.42 if gr * gc > 1 else 1.2
    w, h = max(2.4, cell * gc + 0.9), max(2.0, cell * gr + 0.9)
    fig, axes = plt.subplots(2, 3, figsize=(3 * w + 1.2, 2 * h + 0.9), constrained_layout=True, squeeze=False)
    im = None
    for ax, unit in zip(axes.ravel(), UNITS):
        a = np.zeros((gr, gc))
        for (r, c), b in s.busy.items():
            if r < gr and c < gc:
                a[r, c] = b[unit]
        im = ax.imshow(a, vmin=0, vmax=1, cmap="viridis", aspect="equal")
        ax.set_title(f"{TITLES[unit]}: mean {a.mean():.0%}, max {a.max():.0%}", fontsize=9)
        ax.set_xticks(_ticks(gc))
        ax.set_yticks(_ticks(gr))
        ax.tick_params(labelsize=7)
        ax.set_xlabel("core column", fontsize=8)
        ax.set_ylabel("core row", fontsize=8)
        if gr * gc <= 120:  # every cell labelled
            size = 14 if gr * gc == 1 else 9 if gr * gc <= 16 else 6
            for r in range(gr):
                for c in range(gc):
                    v = a[r, c]
                    ax.text(c, r, f"{v:.0%}", ha="center", va="center", fontsize=size,
                            color="black" if v > 0.6 else "white")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="fraction of the run busy")
    fig.suptitle(f"{s.kernel} on {s.device} {gr}x{gc}, {s.fidelity}: {s.seconds * 1e3:.3f} ms, bound: {s.bound}",
                 fontsize=10)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _representatives(s: Any) -> list[tuple[int, int]]:
    """Core (0, 0), the core that finishes last, and the least busy core (distinct, in that order)."""
    cores = sorted(s.busy)
    last = max(cores, key=lambda c: max((t for (k, _), t in s.ends.items() if k == c), default=0.0))
    idle = min(cores, key=lambda c: s.busy[c]["fpu"] + s.busy[c]["sfpu"])
    out = []
    for c in (cores[0], last, idle):
        if c not in out:
            out.append(c)
    return out


def timeline(s: Any, path: str, plt: Any, np: Any) -> str | None:
    act = s.activity
    if act is None or not act.tracks:
        return None
    threads = sorted({t for (_, t) in act.tracks} | {t for (_, t) in s.ends},
                     key=lambda n: (s.thread_kinds.get(n, "compute") != "compute", s.thread_kinds.get(n, ""), n))
    compute = next((t for t in threads if s.thread_kinds.get(t, "compute") == "compute"), threads[0])
    nbins = max(1, int(np.ceil(s.cycles / act.width)))
    cores = sorted(s.busy)
    reps = _representatives(s)
    lanes = [(c, t) for c in reps for t in threads]
    heat = np.array([act.fractions((c, compute), nbins) for c in cores])
    top = min(5.0, max(1.6, 0.16 * len(cores) + 0.8))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, top + 0.42 * len(lanes) + 1.6), constrained_layout=True,
                                   gridspec_kw={"height_ratios": [top, 0.42 * len(lanes) + 0.3]}, sharex=True)
    extent = (0, nbins * act.width, len(cores) - 0.5, -0.5)
    im = ax1.imshow(heat, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0, vmax=1, extent=extent)
    # every core labelled on small grids; on large ones the first core of each grid row
    ticks = list(range(len(cores))) if len(cores) <= 16 else [k for k, (_, c) in enumerate(cores) if c == 0]
    ax1.set_yticks(ticks)
    ax1.set_yticklabels([f"({cores[k][0]}, {cores[k][1]})" for k in ticks], fontsize=7)
    ax1.set_ylabel("core (row, col)", fontsize=8)
    ax1.set_title(f"compute thread '{compute}' busy over the whole run, every core ({len(cores)}); "
                  f"{act.width:,.0f} cycles per column", fontsize=9)
    fig.colorbar(im, ax=ax1, shrink=0.9, label="busy fraction")
    colors = {"compute": "tab:blue"}
    x = np.arange(nbins) * act.width
    for y, (core, t) in enumerate(lanes):
        frac = np.array(act.fractions((core, t), nbins))
        kind = s.thread_kinds.get(t, "compute")
        color = colors.get(kind, "tab:green")
        ax2.fill_between(x, y - 0.4, y - 0.4 + 0.8 * frac, step="post", color=color, linewidth=0)
        ax2.axhline(y - 0.4, color="0.85", linewidth=0.5)
        end = s.ends.get((core, t))
        if end:
            ax2.plot([end, end], [y - 0.45, y + 0.45], color="black", linewidth=1)
    ax2.set_yticks(range(len(lanes)))
    ax2.set_yticklabels([f"{c} {t}" for c, t in lanes], fontsize=7)
    ax2.set_ylim(len(lanes) - 0.5, -0.6)
    ax2.set_xlim(0, s.cycles)
    ax2.set_xlabel(f"cycles (run: {s.cycles:,.0f} = {s.seconds * 1e3:.3f} ms)", fontsize=8)
    ax2.set_title("threads of core (0, 0), the core that finishes last and the least busy core: blue compute busy, "
                  "green DMA in flight (bar height = fraction of each column), black tick = the thread's end",
                  fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write(s: Any, directory: str, prefix: str = "") -> list[str]:
    """The PNGs for summary `s` in `directory`; [] when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    import numpy as np

    os.makedirs(directory, exist_ok=True)
    files = [utilisation(s, os.path.join(directory, f"{prefix}utilisation.png"), plt, np)]
    t = timeline(s, os.path.join(directory, f"{prefix}timeline.png"), plt, np)
    return files + ([t] if t else [])
