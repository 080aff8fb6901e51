"""Per-process state the poll path reads: the mirror, caches, shared tables, write-behind."""
