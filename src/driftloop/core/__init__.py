"""Domain types and pure helpers: no I/O, no third-party services."""
