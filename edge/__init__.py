"""Edge node: the village office box (intake UI + JSON API on SQLite, outbox, audit trail).

The design is in ``docs/edge.md``. Entry points: :func:`edge.web.create_app` and the
``puskesos edge`` commands.
"""
