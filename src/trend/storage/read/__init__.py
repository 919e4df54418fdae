"""The read path: which sources a read sums (kept totals, carried raw spans, sketches folded in
Python), and their SQL."""
