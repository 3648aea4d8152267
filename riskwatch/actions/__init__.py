"""riskwatch.actions."""
