"""Shared runtime of govcloud's components: the env contract, database, health/metrics, JSON logs."""
