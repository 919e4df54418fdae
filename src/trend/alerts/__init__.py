"""Alerts: rules evaluated by the ``alerts`` job, firings delivered to webhooks (DESIGN section 10)."""
