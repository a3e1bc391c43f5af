"""JWT issue and verification, and the FastAPI dependency for the caller."""
