//! MQTT ingestion with no loss: durable spool before ack, per-visit assembly (dedupe, reorder, gaps, timeouts)
