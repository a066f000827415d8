"""Real servers for tests: the helpers live in :mod:`teamstack.servers` (the team stack uses them too)."""

from teamstack.servers import (  # noqa: F401 - re-exported for the tests and benchmarks
    STARTUP_S,
    VENV_BIN,
    ServerProcess,
    free_port,
    http_get,
    prefect_server,
    venv_env,
)
