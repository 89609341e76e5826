"""The product on a NATS that requires TLS and a client certificate: it
connects with the CA and certificate its settings name; a client without a
certificate is refused."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import nats
import orjson
import pytest

from infra.bootstrap import start
from infra.bus.nats_server import EmbeddedNats
from infra.settings import Settings
from tests.conftest import (
    RELAXED_SLA_POLICY,
    FakeClock,
    connect_as,
    customer_data,
    directory_with_test_users,
)

pytestmark = pytest.mark.anyio


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    """A test CA, and a server and a client certificate it signed."""
    if shutil.which("openssl") is None:
        pytest.skip("the TLS test makes its certificates with the openssl command, which is not installed")
    where = tmp_path / "tls"
    where.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
            "-subj", "/CN=ticketing test CA", cwd=where)
    for name, extension in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
                            ("client", "extendedKeyUsage=clientAuth")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=where)
        (where / f"{name}.ext").write_text(extension + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext", cwd=where)
    return where


@pytest.fixture
def tls_server(tmp_path: Path, certificates: Path) -> Iterator[EmbeddedNats]:
    tls = (f'tls {{ cert_file: "{certificates / "server.pem"}", key_file: "{certificates / "server.key"}", '
           f'ca_file: "{certificates / "ca.pem"}", verify: true, timeout: 5 }}\n')
    server = EmbeddedNats.start(tmp_path / "nats", directory_with_test_users(tmp_path / "data"),
                                preferred_port=0, extra_config=tls)
    yield server
    server.stop()


async def test_the_product_connects_to_a_nats_that_requires_tls_and_a_client_certificate(
        tmp_path: Path, tls_server: EmbeddedNats, certificates: Path, clock: FakeClock) -> None:
    url = tls_server.url.replace("nats://", "tls://")
    settings = Settings(data_dir=tmp_path / "data", nats_url=url, sla_policy=RELAXED_SLA_POLICY,
                        nats_tls_ca=certificates / "ca.pem", nats_tls_cert=certificates / "client.pem",
                        nats_tls_key=certificates / "client.key")
    runtime = await start(settings, clock)
    try:
        context = ssl.create_default_context(cafile=str(certificates / "ca.pem"))
        context.load_cert_chain(str(certificates / "client.pem"), str(certificates / "client.key"))
        agent = await connect_as(url, tls_server.directory.auth_dir, "agent-1", tls=context)
        body = orjson.dumps({"command_id": str(uuid.uuid4()), "data": customer_data()})
        reply = orjson.loads((await agent.request("ticketing.v1.commands.customer.register", body, timeout=10)).data)
        assert reply["ok"], reply
        await agent.close()

        without_certificate = ssl.create_default_context(cafile=str(certificates / "ca.pem"))
        with pytest.raises(Exception):  # noqa: B017 - the handshake fails, or the server closes on us
            nc = await connect_as(url, tls_server.directory.auth_dir, "agent-1", tls=without_certificate,
                                  allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3)
            await nc.request("ticketing.v1.commands.customer.register", body, timeout=3)
        with pytest.raises(Exception):  # noqa: B017 - no TLS at all: refused
            await nats.connect(tls_server.url, nkeys_seed=str(tls_server.directory.auth_dir / "system.nk"),
                               allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3)
    finally:
        await runtime.stop()
