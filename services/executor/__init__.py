"""Executor: runs workflows durably over JetStream (api process orchestrates, workers run nodes)."""
