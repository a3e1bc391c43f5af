"""Node runners: what a worker does for each node type."""
