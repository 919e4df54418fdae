"""The scheduled jobs that keep rollups up to date."""
