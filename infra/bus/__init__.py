"""NATS: the embedded nats-server, the streams, the relay that puts every
stored event on the stream exactly once, the consumers that feed the
projections, and how a connection reports its outages. Adapters: they move
bytes and decide nothing."""
