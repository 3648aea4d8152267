"""``riskwatch run``: wiring the parts together, the asyncio tasks and the signals."""
