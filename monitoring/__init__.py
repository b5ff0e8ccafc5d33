"""Monitoring: fleet telemetry, Prometheus rules and Grafana dashboards.

Built in the "Monitoring" issue; the package exists so the distribution's layout is fixed.
"""
