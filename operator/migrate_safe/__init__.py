"""migrate-safe: safe PostgreSQL schema migrations (CLI harness and Kubernetes operator)."""

__version__ = "0.1.0"
