"""Everything that is neither domain, contract, handler nor projection, by
what it is:

- `settings.py`, `config_files.py`: the TICKETING_* settings and the TOML rule files;
- `bootstrap.py`: the wiring, the one place that builds the parts;
- `store/`: the event store and the databases (adapters);
- `bus/`: NATS, the streams, the relay and the consumers (adapters);
- `auth/`: keys, users, accounts and permissions, the event seal;
- `monitors/`: the SLA and dangerous-customer timers and the policy runner (they decide);
- `runtime/`: the worker, supervision, health and metrics, child processes, the clock;
- `cli/`: the `ticketing` command, a module per group of commands;
- `docs.py`: the AsyncAPI document."""
