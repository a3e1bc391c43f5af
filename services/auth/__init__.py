"""Auth service: users, passwords, tokens."""
