"""Library kernels written in the tilegrid language: `flash_attention` and `flash_attention_backward`
(the flagship, package `tilegrid.kernels.attention`) and `matmul` (module `tilegrid.kernels.gemm`)."""

from tilegrid.kernels.attention import (
    AttentionConfig,
    flash_attention,
    flash_attention_backward,
    reference,
    reference_backward,
)
from tilegrid.kernels.gemm import matmul

__all__ = ["AttentionConfig", "flash_attention", "flash_attention_backward", "matmul", "reference",
           "reference_backward"]
