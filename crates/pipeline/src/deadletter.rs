//! How many dead letters one device may cause. Every rejected message costs the
//! pipeline a publish that it waits on (the broker's PUBACK) and a log line, in the
//! same sequence as alerts: a device flooding bad input would have the pipeline spend
//! its time on dead letters while other devices' alerts wait. Each source gets a
//! burst, then a steady rate; what is over it is counted, and the count goes out with
//! the source's next dead letter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

/// Dead letters a source may cause at once.
pub const BURST: f64 = 1000.0;
/// Dead letters a source may cause per second, after its burst.
pub const PER_SECOND: f64 = 100.0;
/// Sources remembered at most; beyond, those whose budget is full again are forgotten,
/// and while none is, new sources share one budget.
const MAX_SOURCES: usize = 4096;
const OVERFLOW: &str = "*";

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: OffsetDateTime,
    suppressed: u64,
}

impl Bucket {
    fn refill(&mut self, now: OffsetDateTime) {
        let elapsed_s = (now - self.at).as_seconds_f64().max(0.0);
        self.tokens = (self.tokens + elapsed_s * PER_SECOND).min(BURST);
        self.at = self.at.max(now);
    }
}

/// Per-source budgets (a source is a device id, or what the topic names).
#[derive(Debug, Default)]
pub struct DeadLetterBudget {
    sources: HashMap<String, Bucket>,
}

impl DeadLetterBudget {
    /// Whether `source` may have a dead letter published now: `Some(n)` with the number
    /// of its rejections suppressed since its last published one, `None` when this one
    /// is suppressed (and counted).
    pub fn admit(&mut self, source: &str, now: OffsetDateTime) -> Option<u64> {
        let mut source = source;
        if !self.sources.contains_key(source) && self.sources.len() >= MAX_SOURCES {
            self.sources.retain(|_, b| {
                b.refill(now);
                b.tokens < BURST || b.suppressed > 0
            });
            if self.sources.len() >= MAX_SOURCES {
                source = OVERFLOW;
            }
        }
        let bucket = self.sources.entry(source.to_owned()).or_insert(Bucket {
            tokens: BURST,
            at: now,
            suppressed: 0,
        });
        bucket.refill(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Some(std::mem::take(&mut bucket.suppressed))
        } else {
            bucket.suppressed += 1;
            None
        }
    }
}

/// One budget for all the analysis workers: a device's rejected input goes to
/// whichever worker owns its open visit, or to the first, so budgets per worker
/// would let a device have as many bursts as there are workers. Taken once per
/// rejection, which is rare next to the samples the workers analyse.
#[derive(Debug, Clone, Default)]
pub struct SharedDeadLetterBudget(Arc<Mutex<DeadLetterBudget>>);

impl SharedDeadLetterBudget {
    /// [`DeadLetterBudget::admit`] on the shared budget.
    pub fn admit(&self, source: &str, now: OffsetDateTime) -> Option<u64> {
        // Poisoned only by a panic elsewhere in a worker's thread: the budget
        // itself is never left half-changed, so it is still good to use.
        let mut budget = self.0.lock().unwrap_or_else(|e| e.into_inner());
        budget.admit(source, now)
    }
}

/// The device a device topic names (`ecg/v1/dev/{device}/...`), even when the rest of
/// the topic is malformed: the broker's ACL ties that segment to the sender.
pub fn source_of_topic(topic: &str) -> &str {
    topic
        .strip_prefix("ecg/v1/dev/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn a_flood_is_cut_to_its_burst_then_its_rate_and_counted() {
        let mut b = DeadLetterBudget::default();
        let now = t0();
        let published = (0..1000)
            .filter(|_| b.admit("dev-bad", now).is_some())
            .count();
        assert_eq!(published, BURST as usize);
        // Another device is not affected.
        assert_eq!(b.admit("dev-good", now), Some(0));
        // A second later, ten more; the first carries the count suppressed before it.
        let later = now + Duration::seconds(1);
        assert_eq!(b.admit("dev-bad", later), Some(1000 - BURST as u64));
        let more = (0..100)
            .filter(|_| b.admit("dev-bad", later).is_some())
            .count();
        assert_eq!(more, PER_SECOND as usize - 1);
        // Quiet long enough, the whole burst is back.
        let quiet = later + Duration::seconds(600);
        let back = (0..1000)
            .filter(|_| b.admit("dev-bad", quiet).is_some())
            .count();
        assert_eq!(back, BURST as usize);
    }

    #[test]
    fn sources_are_bounded() {
        let mut b = DeadLetterBudget::default();
        let now = t0();
        for i in 0..3 * MAX_SOURCES {
            // One rejection each: a full budget again a few seconds later.
            assert!(b
                .admit(&format!("dev-{i}"), now + Duration::seconds(i as i64))
                .is_some());
            assert!(b.sources.len() <= MAX_SOURCES);
        }
        // All busy at once: the newcomers share one budget.
        let mut b = DeadLetterBudget::default();
        let published = (0..MAX_SOURCES + 5000)
            .filter(|i| b.admit(&format!("dev-{i}"), now).is_some())
            .count();
        assert!(b.sources.len() <= MAX_SOURCES + 1);
        assert_eq!(published, MAX_SOURCES + BURST as usize);
    }

    #[test]
    fn the_source_is_the_topic_device_even_when_the_rest_is_bad() {
        assert_eq!(source_of_topic("ecg/v1/dev/dev-7/visit/x/chunk"), "dev-7");
        assert_eq!(source_of_topic("ecg/v1/dev/dev-7/nonsense"), "dev-7");
        assert_eq!(source_of_topic("something/else"), "");
    }
}
