"""What the write protocol and the read path share: the tables, a transaction, the markers, the
data versions and the SQL of a bucket."""
