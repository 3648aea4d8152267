"""The daemon's HTTP surface: ``/metrics``, health, the ``/api`` endpoints and the status page."""
