"""How each part connects to NATS: the product with its own two identities,
a client with a user's credentials and that user's own inbox, over TLS when
the settings name a CA or a client certificate."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from infra.auth.directory import ProductKeys, UserDirectory, ensure_local
from infra.auth.keys import BadCredentials, connect_options, user_of_seed_file
from infra.auth.permissions import inbox_prefix
from infra.settings import Settings


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if not (settings.nats_tls_ca or settings.nats_tls_cert):
        return None
    context = ssl.create_default_context(cafile=str(settings.nats_tls_ca) if settings.nats_tls_ca else None)
    if settings.nats_tls_cert:
        context.load_cert_chain(str(settings.nats_tls_cert),
                                str(settings.nats_tls_key) if settings.nats_tls_key else None)
    return context


def product_options(settings: Settings, responder: bool = False) -> dict[str, Any]:
    """Connect arguments of the product's system identity (or its responders')."""
    options = connect_options(settings.responder_credentials if responder else settings.system_credentials)
    if (tls := tls_context(settings)) is not None:
        options["tls"] = tls
    return options


def product_directory(settings: Settings) -> UserDirectory:
    """The user directory; on the embedded default (or when the product's
    keys are the data directory's), the keys are made on first use."""
    if settings.nats_credentials is None and settings.nats_responder_credentials is None:
        directory, _ = ensure_local(settings.auth_dir)
        return directory
    try:
        keys = ProductKeys(system=user_of_seed_file(settings.system_credentials),
                           responder=user_of_seed_file(settings.responder_credentials))
    except (OSError, ValueError) as error:
        raise BadCredentials(f"the product's NATS credentials must be nkey seed files: {error}") from None
    return UserDirectory(settings.auth_dir, keys)


def client_options(settings: Settings, credentials: Path | None = None) -> dict[str, Any]:
    """Connect arguments of a user: its credentials and its own inbox (the
    user's name from the local directory, else the file's name)."""
    path = credentials or settings.client_credentials
    options = connect_options(path)
    name = path.stem
    if "nkeys_seed" in options:
        key = user_of_seed_file(path)
        known = next((u for u in UserDirectory(settings.auth_dir, ProductKeys("", "")).users() if u.nkey == key),
                     None)
        name = known.name if known else name
    options["inbox_prefix"] = inbox_prefix(name)
    if (tls := tls_context(settings)) is not None:
        options["tls"] = tls
    return options
