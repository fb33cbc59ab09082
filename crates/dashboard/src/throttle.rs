//! Failed-login throttling: after a few wrong passwords for one user name,
//! or from one client address, that name or address is refused without a
//! password check for a while, each further lockout longer than the last.
//! Refused attempts do not run argon2, so a guesser costs the server
//! little, and a cardiologist who mistypes a few times waits seconds, not
//! hours. A successful login clears its user name and address.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Thresholds and lockout times.
#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Failures of one user name before it is locked.
    pub per_user: u32,
    /// Failures from one address before it is locked (higher: a ward may
    /// share one address behind NAT).
    pub per_addr: u32,
    /// The first lockout; it doubles with each further failure past the
    /// limit, up to `max_lockout`.
    pub lockout: Duration,
    pub max_lockout: Duration,
    /// Failures older than this are forgotten.
    pub window: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            per_user: 5,
            per_addr: 20,
            lockout: Duration::from_secs(30),
            max_lockout: Duration::from_secs(15 * 60),
            window: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    failures: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Who is throttled: a user name or a client address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Addr(String),
}

/// Bounds the table: a flood of invented user names cannot grow memory
/// without limit (the oldest entries go first).
const MAX_ENTRIES: usize = 10_000;

/// The failure counts.
#[derive(Debug)]
pub struct Throttle {
    cfg: ThrottleConfig,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl Throttle {
    pub fn new(cfg: ThrottleConfig) -> Throttle {
        Throttle {
            cfg,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn keys(user: &str, addr: Option<&str>) -> Vec<Key> {
        let mut k = vec![Key::User(user.to_owned())];
        if let Some(a) = addr {
            k.push(Key::Addr(a.to_owned()));
        }
        k
    }

    /// `Err(wait)` when an attempt for `user` from `addr` must be refused
    /// now, without checking the password.
    pub fn check(&self, user: &str, addr: Option<&str>, now: Instant) -> Result<(), Duration> {
        let e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let wait = Self::keys(user, addr)
            .iter()
            .filter_map(|k| e.get(k)?.locked_until)
            .filter(|&until| until > now)
            .map(|until| until - now)
            .max();
        wait.map_or(Ok(()), Err)
    }

    /// Records a wrong password.
    pub fn failed(&self, user: &str, addr: Option<&str>, now: Instant) {
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if e.len() >= MAX_ENTRIES {
            let window = self.cfg.window;
            e.retain(|_, v| {
                now.saturating_duration_since(v.last) < window
                    || v.locked_until.is_some_and(|u| u > now)
            });
            while e.len() >= MAX_ENTRIES {
                let Some(oldest) = e.iter().min_by_key(|(_, v)| v.last).map(|(k, _)| k.clone())
                else {
                    break;
                };
                e.remove(&oldest);
            }
        }
        for key in Self::keys(user, addr) {
            let limit = match key {
                Key::User(_) => self.cfg.per_user,
                Key::Addr(_) => self.cfg.per_addr,
            };
            let entry = e.entry(key).or_insert(Entry {
                failures: 0,
                last: now,
                locked_until: None,
            });
            if now.saturating_duration_since(entry.last) > self.cfg.window {
                entry.failures = 0;
            }
            entry.failures += 1;
            entry.last = now;
            if entry.failures >= limit {
                let doublings = (entry.failures - limit).min(16);
                let lock = self
                    .cfg
                    .lockout
                    .saturating_mul(1 << doublings)
                    .min(self.cfg.max_lockout);
                entry.locked_until = Some(now + lock);
            }
        }
    }

    /// Records a successful login: its user name and address start over.
    pub fn succeeded(&self, user: &str, addr: Option<&str>) {
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for k in Self::keys(user, addr) {
            e.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ThrottleConfig {
        ThrottleConfig {
            per_user: 3,
            per_addr: 5,
            lockout: Duration::from_secs(10),
            max_lockout: Duration::from_secs(60),
            window: Duration::from_secs(600),
        }
    }

    #[test]
    fn locks_a_user_after_the_limit_for_longer_each_time_and_forgives_success() {
        let t = Throttle::new(cfg());
        let t0 = Instant::now();
        let a = Some("10.0.0.1");
        for i in 0..2 {
            assert!(t.check("dr.li", a, t0).is_ok(), "attempt {i}");
            t.failed("dr.li", a, t0);
        }
        assert!(t.check("dr.li", a, t0).is_ok());
        t.failed("dr.li", a, t0);
        // Third failure: locked for 10 s, also from another address.
        assert_eq!(t.check("dr.li", a, t0), Err(Duration::from_secs(10)));
        assert!(t.check("dr.li", Some("10.0.0.2"), t0).is_err());
        // Another user from the same address is not locked yet.
        assert!(t.check("dr.wang", a, t0).is_ok());
        let t1 = t0 + Duration::from_secs(11);
        assert!(t.check("dr.li", a, t1).is_ok());
        // One more failure past the limit doubles the lockout.
        t.failed("dr.li", a, t1);
        assert_eq!(t.check("dr.li", a, t1), Err(Duration::from_secs(20)));
        // Never beyond the maximum.
        for _ in 0..10 {
            t.failed("dr.li", a, t1);
        }
        assert_eq!(t.check("dr.li", a, t1), Err(Duration::from_secs(60)));
        t.succeeded("dr.li", a);
        assert!(t.check("dr.li", a, t1).is_ok());
    }

    #[test]
    fn locks_an_address_that_tries_many_user_names() {
        let t = Throttle::new(cfg());
        let t0 = Instant::now();
        let a = Some("10.0.0.9");
        for i in 0..5 {
            t.failed(&format!("guess-{i}"), a, t0);
        }
        assert!(t.check("dr.li", a, t0).is_err(), "the address is locked");
        assert!(t.check("dr.li", Some("10.0.0.10"), t0).is_ok());
        // Old failures are forgotten after the window.
        let t = Throttle::new(cfg());
        t.failed("dr.li", None, t0);
        t.failed("dr.li", None, t0);
        let later = t0 + Duration::from_secs(601);
        t.failed("dr.li", None, later);
        assert!(t.check("dr.li", None, later).is_ok());
    }
}
