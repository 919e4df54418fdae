"""Running the rollup levels: one runner for every level of :data:`trend.model.LEVELS`."""
