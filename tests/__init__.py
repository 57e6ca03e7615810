"""zgbench's tests: a package, so that `tests.x` imports resolve here even where an installed
distribution ships a top-level `tests` package of its own (skelo, glicko2 via iohinspector do)."""
