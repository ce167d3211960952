"""Data formats: values are held as float32 arrays, rounded to their format where hardware rounds."""

from __future__ import annotations

import ml_dtypes
import numpy as np

NP_DTYPES = {"bf16": ml_dtypes.bfloat16, "f32": np.float32}


def dtype_of(a: np.ndarray) -> str | None:
    if a.dtype == ml_dtypes.bfloat16:
        return "bf16"
    if a.dtype == np.float32:
        return "f32"
    return None


def round_to(x: np.ndarray, dtype: str) -> np.ndarray:
    """x (float32) rounded to `dtype` (round-to-nearest-even), still as float32."""
    if dtype == "bf16":
        return np.asarray(x, np.float32).astype(ml_dtypes.bfloat16).astype(np.float32)
    return np.asarray(x, np.float32)
