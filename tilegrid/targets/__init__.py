"""Backends that run tilegrid kernels outside its own simulators (tt-metal on a real or simulated Tensix chip)."""
