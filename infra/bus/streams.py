"""The JetStream stream that carries every event."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError

from contracts.catalog import EVENT_STREAM, EVENT_SUBJECTS

DUPLICATE_WINDOW_SECONDS = 600.0


def event_stream_config() -> StreamConfig:
    return StreamConfig(
        name=EVENT_STREAM,
        subjects=[EVENT_SUBJECTS],
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    )


async def ensure_event_stream(js: JetStreamContext) -> None:
    config = event_stream_config()
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)
