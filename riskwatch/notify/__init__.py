"""riskwatch.notify."""
