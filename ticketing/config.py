"""Reading the product's TOML files (the SLA policy, the dangerous-customer
rules): operations teams write them, so every mistake is reported with its
line and the reason."""

from __future__ import annotations

import re
import tomllib
from typing import Any


class ConfigError(ValueError):
    def __init__(self, line: int | None, reason: str) -> None:
        super().__init__(f"line {line}: {reason}" if line else reason)
        self.line = line
        self.reason = reason


def load(text: str) -> dict[str, Any]:
    """The parsed file, or ConfigError with the line TOML complains about."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        found = re.search(r"line (\d+)", str(error))
        raise ConfigError(int(found.group(1)) if found else None, str(error)) from None


class Lines:
    """Finds the line of a key in the text a file was parsed from."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def line_of(self, key: str, section: str | None = None, nth: int = 0) -> int | None:
        """The line of `key = ...` in the `nth` `section` (else the section's
        own line), or at the top level; `line_of(section, nth=n)` is the line
        of the `n`th `section` header."""
        start, end = 0, len(self.lines)
        if section is not None or key.startswith("["):
            headers = [i for i, line in enumerate(self.lines) if line.strip().startswith(section or key)]
            if nth >= len(headers):
                return None
            if section is None:
                return headers[nth] + 1
            start = headers[nth] + 1
            end = next((i for i in range(start, end) if self.lines[i].strip().startswith("[")), end)
        for i in range(start, end):
            if re.match(rf"^{re.escape(key)}\s*=", self.lines[i].strip()):
                return i + 1
        return start if section is not None else None

    def fail(self, reason: str, key: str, section: str | None = None, nth: int = 0) -> ConfigError:
        return ConfigError(self.line_of(key, section, nth), reason)
