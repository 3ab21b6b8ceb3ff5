"""What the stages stand on but the data does not: hashing, code dependencies, atomic writes, the shard cache."""
