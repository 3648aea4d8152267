"""riskwatch.rules."""
