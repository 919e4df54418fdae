"""The write protocol: events in, markers set, buckets recomputed (whole or in pieces), runs
recorded, alerts and file progress kept."""
