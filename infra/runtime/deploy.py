"""What a deployment on several machines uses, written as files: a
nats-server configuration per node (clustered JetStream, its own store and
ports, `sync_interval: always`, the accounts included), an environment file
per instance of the product, and systemd unit templates that start each
from exactly those files. `ticketing cluster up` writes them into
`<data dir>/deploy/` and starts its processes from them on this machine;
on three hosts they are copied over (the README's "On several machines")."""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson

from infra.auth.directory import UserDirectory
from infra.auth.server_config import write_accounts
from infra.bus.nats_server import binary, free_port
from infra.settings import Settings

CLUSTER_NAME = "ticketing"


@dataclass(frozen=True)
class Node:
    name: str
    port: int
    route_port: int

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Deployment:
    directory: Path
    nodes: list[Node]
    instances: list[str]

    def node_config(self, node: Node) -> Path:
        return self.directory / f"{node.name}.conf"

    def node_store(self, node: Node, data_dir: Path) -> Path:
        return data_dir / "cluster" / node.name

    def instance_env(self, instance: str) -> Path:
        return self.directory / f"{instance}.env"

    @property
    def nats_url(self) -> str:
        return ",".join(node.url for node in self.nodes)


def plan(settings: Settings, nodes: int, instances: int) -> Deployment:
    """The nodes and instances, on the ports chosen the first time (kept in
    `deploy/cluster.json`, so a deployment comes back where it was)."""
    directory = settings.data_dir / "deploy"
    kept = directory / "cluster.json"
    earlier = orjson.loads(kept.read_bytes()) if kept.exists() else {}
    found = []
    for i in range(1, nodes + 1):
        name = f"nats-{i}"
        ports = earlier.get("nodes", {}).get(name) or [free_port(), free_port()]
        found.append(Node(name, int(ports[0]), int(ports[1])))
    return Deployment(directory, found, [f"instance-{i}" for i in range(1, instances + 1)])


def write(deployment: Deployment, settings: Settings, directory: UserDirectory) -> None:
    deployment.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    accounts = write_accounts(directory)
    (deployment.directory / "cluster.json").write_bytes(orjson.dumps(
        {"nodes": {n.name: [n.port, n.route_port] for n in deployment.nodes}, "instances": deployment.instances},
        option=orjson.OPT_INDENT_2))
    for node in deployment.nodes:
        store = deployment.node_store(node, settings.data_dir)
        store.mkdir(parents=True, exist_ok=True, mode=0o700)
        routes = [f"nats://127.0.0.1:{other.route_port}" for other in deployment.nodes if other != node]
        config = deployment.node_config(node)
        config.write_text(
            f"# Written by `ticketing cluster up`: node {node.name} of the cluster {CLUSTER_NAME!r}.\n"
            f"server_name: {json.dumps(node.name)}\n"
            f"listen: \"127.0.0.1:{node.port}\"\n"
            # fsync every write: acknowledged messages survive a power loss of every node together
            f"jetstream: {{ store_dir: {json.dumps(str(store.resolve()))}, sync_interval: always }}\n"
            f"cluster: {{ name: {json.dumps(CLUSTER_NAME)}, listen: \"127.0.0.1:{node.route_port}\", "
            f"routes: {json.dumps(routes)} }}\n"
            f"pid_file: {json.dumps(str((store / 'nats-server.pid').resolve()))}\n"
            f"include \"{os.path.relpath(accounts, config.parent)}\"\n")
    given = {k: v for k, v in os.environ.items() if k.startswith("TICKETING_") and k not in ("TICKETING_NATS_URL",
                                                                                         "TICKETING_INSTANCE")}
    for instance in deployment.instances:
        values = given | {"TICKETING_DATA_DIR": str(settings.data_dir.resolve()),
                  "TICKETING_DATABASE_URL": str(settings.database_url),
                  "TICKETING_NATS_URL": deployment.nats_url, "TICKETING_INSTANCE": instance,
                  "TICKETING_STREAM_REPLICAS": str(min(3, len(deployment.nodes))),
                  "TICKETING_LEASE_SECONDS": str(settings.lease_seconds), "TICKETING_METRICS_PORT": "0",
                  "TICKETING_LOG_LEVEL": settings.log_level}  # and every other setting `cluster up` was given
        deployment.instance_env(instance).write_text(
            f"# Written by `ticketing cluster up`: the environment of {instance} (systemd EnvironmentFile).\n"
            + "".join(f"{key}={value}\n" for key, value in values.items()))
        os.chmod(deployment.instance_env(instance), 0o600)  # it names the database
    ticketing = shutil.which("ticketing") or str(Path(sys.executable).parent / "ticketing")
    (deployment.directory / "ticketing@.service").write_text(
        "# An instance of the product: `systemctl enable --now ticketing@instance-1`.\n"
        "[Unit]\nDescription=ticketing %i\nAfter=network-online.target\n\n"
        f"[Service]\nEnvironmentFile={deployment.directory.resolve()}/%i.env\nExecStart={ticketing} serve\n"
        "Restart=always\nRestartSec=1\nKillSignal=SIGTERM\n\n[Install]\nWantedBy=multi-user.target\n")
    (deployment.directory / "nats@.service").write_text(
        "# A node of the NATS cluster: `systemctl enable --now nats@nats-1`.\n"
        "[Unit]\nDescription=nats-server %i\nAfter=network-online.target\n\n"
        f"[Service]\nExecStart={binary()} -c {deployment.directory.resolve()}/%i.conf\n"
        "ExecReload=/bin/kill -HUP $MAINPID\nRestart=always\nRestartSec=1\n\n"
        "[Install]\nWantedBy=multi-user.target\n")


def environment(path: Path) -> dict[str, str]:
    """An environment file's variables (KEY=VALUE lines; # comments)."""
    found = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    return found
