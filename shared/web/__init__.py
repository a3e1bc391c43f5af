"""HTTP plumbing every service shares: the app factory, error mapping, health, metrics."""
