//! SQL over the archive (DataFusion), with the tables registered and partition columns usable in WHERE
