"""riskwatch.rules.expr."""
