"""Random tilegrid programs from the language's grammar, checked against a float64 interpreter."""
