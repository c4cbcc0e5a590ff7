"""`python -m migrate_safe` runs the CLI."""

from migrate_safe.cli import main

raise SystemExit(main())
