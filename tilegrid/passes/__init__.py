"""Compiler passes, one transformation per module; `pipeline.py` lists them in order."""
