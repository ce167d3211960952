"""FlashAttention error vs float64 as the number of keys grows, fp32 vs bf16 accumulators.

The running max, running sum and output accumulator are the state an online softmax carries
across every K/V chunk; kept in bf16 (as tt-metal's default bf16 accumulators are) their
rounding error grows with the number of keys; in fp32 it does not. bf16 inputs, one head,
256 queries attending to 1024 or 16384 keys, head_dim 64 and 128.
Run: python benchmarks/fa_accuracy.py
"""

from __future__ import annotations

import numpy as np
from ml_dtypes import bfloat16

from tilegrid.kernels.attention import AttentionConfig, flash_attention, reference


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"{'keys':>6} {'d':>4} {'causal':>6} {'fp32 acc err':>13} {'bf16 acc err':>13}")
    for d in (64, 128):
        for skv in (1024, 16384):
            for causal in (False, True):
                q = rng.standard_normal((1, 1, 256, d)).astype(bfloat16)
                k = rng.standard_normal((1, 1, skv, d)).astype(bfloat16)
                v = rng.standard_normal((1, 1, skv, d)).astype(bfloat16)
                ref, _ = reference(q, k, v, causal=causal)
                errs = []
                for acc in ("f32", "bf16"):
                    cfg = AttentionConfig(grid=(8, 8), q_chunk=1, kv_chunk=4, acc_dtype=acc)
                    out = flash_attention(q, k, v, causal=causal, config=cfg)
                    errs.append(np.linalg.norm(np.asarray(out, np.float64) - ref) / np.linalg.norm(ref))
                print(f"{skv:>6} {d:>4} {str(causal):>6} {errs[0]:>13.3e} {errs[1]:>13.3e}", flush=True)


if __name__ == "__main__":
    main()
