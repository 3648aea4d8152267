"""riskwatch.qfex."""
