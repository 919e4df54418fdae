"""Alerts: rules evaluated by the ``alerts`` job, firings delivered to webhooks (docs/alerts.md)."""
