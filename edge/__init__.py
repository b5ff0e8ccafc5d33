"""Edge node: the village office box (intake UI, SQLite store, outbox, sync client).

Built in the "Edge node" issue; the package exists so the distribution's layout is fixed.
"""
