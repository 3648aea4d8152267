"""riskwatch.state."""
