"""The drivers on a manual clock: ``riskwatch replay``, ``riskwatch test``, their timeline."""
