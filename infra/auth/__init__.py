"""Who may speak on the bus: the product's keys and its users' (nkeys kept in
the data directory, owner-only), the user directory, the NATS accounts and
per-subject permissions derived from the domain's role tables, the seal
that tells the relay's events from anyone else's (the `users` commands are in
`infra/cli/users.py`)."""
