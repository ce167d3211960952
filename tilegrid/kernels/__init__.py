"""Library kernels written in the tilegrid language: `flash_attention` (the flagship, package
`tilegrid.kernels.attention`) and `matmul` (module `tilegrid.kernels.gemm`)."""

from tilegrid.kernels.attention import AttentionConfig, flash_attention, reference
from tilegrid.kernels.gemm import matmul

__all__ = ["AttentionConfig", "flash_attention", "matmul", "reference"]
