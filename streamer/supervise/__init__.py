"""Supervision over the events: alert rules evaluated, the alert feed and its store, call
summaries, webhooks, the supervisor API and the dashboard."""
