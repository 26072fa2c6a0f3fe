"""Asset modules, one per group; each body wires plain modules together."""
