from tests.processes import serves  # noqa: F401 - the fixture, for every test here
