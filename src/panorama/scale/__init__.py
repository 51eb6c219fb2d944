"""Scale-out: the batch pipeline on Spark and the log as Parquet (`engine: spark`, docs/scale.md)."""
