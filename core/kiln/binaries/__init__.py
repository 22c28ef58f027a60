"""Kernel binaries: fatbins, cubins, and what SAVE stores of them (device cubins, pruned and
compacted images, each verified)."""
