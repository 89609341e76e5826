"""The JetStream stream that carries every event."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError

from contracts.catalog import EVENT_STREAM, EVENT_SUBJECTS

DUPLICATE_WINDOW_SECONDS = 600.0


def event_stream_config(replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=EVENT_STREAM,
        subjects=[EVENT_SUBJECTS],
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        num_replicas=replicas,
    )


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """The stream made, or brought to `config` (its replicas raised, say) when it exists."""
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)


async def ensure_event_stream(js: JetStreamContext, replicas: int = 1) -> None:
    await ensure_stream(js, event_stream_config(replicas))
