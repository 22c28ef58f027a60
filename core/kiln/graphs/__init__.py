"""Graphs: capture in this process (CaptureSession), SAVE of a graph set to an archive and its
LOAD back into replayable graphs, the restored graphs and their tensors."""
