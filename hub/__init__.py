"""District hub: MQTT ingest, merge, review, monthly cycle, forwarding and downlink.

Built in the "Replication" and "District hub" issues; the package exists so the
distribution's layout is fixed.
"""
