"""``python -m riskwatch`` runs the command line."""

from riskwatch.cli.main import main

raise SystemExit(main())
