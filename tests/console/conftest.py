from collections.abc import Iterator

import pytest

from tests.console.site import Site


@pytest.fixture(scope="package")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One serve with its console for every test here: each test makes its own people and cases."""
    running = Site(tmp_path_factory.mktemp("console"))
    yield running
    running.stop()
