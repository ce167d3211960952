"""Small kernels with one user mistake each, for tests/test_errors.py.

The offending line of each kernel carries a marker comment `# ERR[key]` (and, where an error
must name a second line, `# ALSO[key]`); the tests find the exact line number from the marker.
Thread functions are parsed from source, so these kernels must live in real files.
"""
