"""The edge box's web application (UI pages, JSON API, health and metrics)."""

from edge.web.app import create_app

__all__ = ["create_app"]
