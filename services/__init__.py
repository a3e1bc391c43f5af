"""The platform's services; each imports `shared`, never another service."""
