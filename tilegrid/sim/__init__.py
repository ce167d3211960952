"""The functional simulator: runs compiled tile IR on the CPU, core by core, thread by thread."""
