"""Real servers come from the harness in cluster/ (started on first use, stopped at exit)."""

pytest_plugins = ["cluster.pytest_plugin"]
