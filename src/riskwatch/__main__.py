"""``python -m riskwatch`` runs the command line."""

from riskwatch.cli import main

raise SystemExit(main())
