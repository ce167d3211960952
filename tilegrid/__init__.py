"""tilegrid: a Python kernel language and compiler for Tensix-style many-core tile accelerators."""

from ml_dtypes import bfloat16

from tilegrid.device import BLACKHOLE_P100A, WORMHOLE, WORMHOLE_N150, Device
from tilegrid.errors import CompileError, DeadlockError, TilegridError
from tilegrid.lang import *  # noqa: F403
from tilegrid.lang import __all__ as _lang_all

__all__ = [
    *_lang_all,
    "BLACKHOLE_P100A",
    "WORMHOLE",
    "WORMHOLE_N150",
    "CompileError",
    "DeadlockError",
    "Device",
    "TilegridError",
    "bfloat16",
]
__version__ = "0.1.0"
