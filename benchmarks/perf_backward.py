"""Predicted Tensix time of FlashAttention forward + backward (a training step's attention) under
the performance model: timing-only runs of tilegrid's forward and its three backward programs,
each with its bound (tilegrid/kernels/attention/step_perf.py).

    python benchmarks/perf_backward.py [--device wormhole|blackhole] [--exp accurate|approx]
"""

from __future__ import annotations

import argparse

from tilegrid.device import BLACKHOLE_P100A, WORMHOLE
from tilegrid.kernels.attention.step_perf import predict_step

SHAPES = [(1, 8, 2048, 64), (1, 8, 2048, 128), (1, 8, 8192, 128)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", choices=["wormhole", "blackhole"], default="wormhole")
    ap.add_argument("--exp", choices=["accurate", "approx"], default="accurate")
    ap.add_argument("--fidelity", default="HiFi4")
    a = ap.parse_args()
    device = WORMHOLE if a.device == "wormhole" else BLACKHOLE_P100A
    print(f"{device.name} {device.grid[0]}x{device.grid[1]}, {a.fidelity}, exp {a.exp}, bf16")
    print("| B x H x N x D | causal | forward ms | backward ms (prep / dK,dV / dQ) | step ms | bwd / fwd | "
          "fwd TFLOP/s | bwd TFLOP/s | bound (dK,dV) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shape in SHAPES:
        for causal in (False, True):
            s = predict_step(shape, shape, causal=causal, device=device, fidelity=a.fidelity, exp=a.exp)
            fwd, bwd = s.forward_seconds, s.backward_seconds
            parts = " / ".join(f"{s.summaries[k].seconds * 1e3:.3f}" for k in ("prep", "dkdv", "dq"))
            print(f"| {'x'.join(map(str, shape))} | {'yes' if causal else 'no'} | {fwd * 1e3:.3f} | "
                  f"{bwd * 1e3:.3f} ({parts}) | {(fwd + bwd) * 1e3:.3f} | {bwd / fwd:.2f} | "
                  f"{s.forward_flops / fwd / 1e12:.1f} | {2.5 * s.forward_flops / bwd / 1e12:.1f} | "
                  f"{s.summaries['dkdv'].bound} |", flush=True)


if __name__ == "__main__":
    main()
