//! The streaming pipeline: ingest, per-visit analysis, alerts and results, archive
