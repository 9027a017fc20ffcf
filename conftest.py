"""Makes the shared fixtures (tests/fixtures.py) available to tests/ and conformance/ alike."""

pytest_plugins = ["tests.fixtures"]
