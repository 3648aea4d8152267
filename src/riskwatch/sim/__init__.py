"""riskwatch.sim."""
