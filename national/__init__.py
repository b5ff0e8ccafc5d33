"""The reference national receiver: takes the districts' signed monthly datasets over HTTP
(chunked, resumable, idempotent), verifies them against each district's registered key,
stores them, and produces the published-results file of a period.

Modules: :mod:`national.config` (settings), :mod:`national.store` (registry and deliveries
on disk), :mod:`national.web` (the API of ``docs/national-api.yaml``),
:mod:`national.publish` (the stand-in for BPS's results), :mod:`national.cli` (commands).
"""
