"""QFEX reference data: what each symbol allows (docs/protocol.md §11).

:mod:`~riskwatch.refdata.model` parses ``GET /refdata`` and the
``available_leverage_levels_response``; :mod:`~riskwatch.refdata.sizing` rounds
quantities to lots, decides how a reduction can be sent, snaps leverage to a level
and reads TWAP statuses; :mod:`~riskwatch.refdata.hours` says whether a symbol's
market is open and what the position limit will be at the next close;
:mod:`~riskwatch.refdata.fetch` keeps the data fresh over HTTP. All but ``fetch`` are
pure.
"""
