"""The per-request call flow: leg A, then leg B, a mixing bridge, and the outcome."""
