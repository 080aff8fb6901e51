"""Pure rules of the release model: standard library only, no I/O."""
