"""The event store and the databases: the store itself (eventsourcing on
SQLAlchemy, gap-free positions, contact data encrypted), the group-commit
writer every command runs on, the store's key, the engines of the read
models, and rebuilding a read model from the store. Adapters: they decide
nothing."""
