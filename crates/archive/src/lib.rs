//! The lossless Parquet archive: hive-partitioned tables written atomically and idempotently
