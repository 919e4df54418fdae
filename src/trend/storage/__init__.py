"""Everything that speaks SQL. Nothing outside this package builds a statement."""
