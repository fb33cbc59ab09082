//! Who may see patient data: cardiologist accounts (argon2 password hashes
//! in the config), sessions held in memory behind an HttpOnly cookie, and
//! one-time access tokens (the demo prints a URL with one, as Jupyter does).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Deserialize;

/// The session cookie's name.
pub const COOKIE: &str = "ecg_session";

/// A cardiologist's account as written in the config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub user: String,
    /// PHC string, e.g. `$argon2id$v=19$m=19456,t=2,p=1$...`
    /// (`ecgtriage dashboard-password` prints one).
    pub password_hash: String,
}

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("hashing the password: {0}")]
pub struct HashError(String);

/// The PHC string of `password` (argon2id, random salt).
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// 256 random bits, hex.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Session {
    user: String,
    expires: Instant,
}

/// Accounts, sessions and one-time tokens.
pub struct Auth {
    accounts: Vec<Account>,
    sessions: Mutex<HashMap<String, Session>>,
    one_time: Mutex<HashSet<String>>,
    ttl: Duration,
}

impl Auth {
    pub fn new(accounts: Vec<Account>) -> Auth {
        Auth {
            accounts,
            sessions: Mutex::new(HashMap::new()),
            one_time: Mutex::new(HashSet::new()),
            ttl: Duration::from_secs(12 * 3600),
        }
    }

    /// Checks a user name and password; on success opens a session and
    /// returns its cookie value.
    pub fn login(&self, user: &str, password: &str) -> Option<String> {
        let account = self.accounts.iter().find(|a| a.user == user)?;
        let hash = PasswordHash::new(&account.password_hash).ok()?;
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .ok()?;
        Some(self.open_session(user))
    }

    /// A new one-time token; [`Auth::redeem`] turns it into a session once.
    pub fn issue_one_time(&self) -> String {
        let t = random_token();
        self.one_time
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(t.clone());
        t
    }

    /// Consumes a one-time token; returns the new session's cookie value.
    pub fn redeem(&self, token: &str) -> Option<String> {
        let ok = self
            .one_time
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token);
        ok.then(|| self.open_session("token-user"))
    }

    fn open_session(&self, user: &str) -> String {
        let id = random_token();
        let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        s.retain(|_, v| v.expires > now);
        s.insert(
            id.clone(),
            Session {
                user: user.to_owned(),
                expires: now + self.ttl,
            },
        );
        id
    }

    /// The user of a live session.
    pub fn user(&self, session: &str) -> Option<String> {
        let s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        s.get(session)
            .filter(|v| v.expires > Instant::now())
            .map(|v| v.user.clone())
    }

    pub fn logout(&self, session: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(session);
    }
}

/// The session id in a `Cookie` header.
pub fn session_from_cookie(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// `Set-Cookie` value for a session.
pub fn set_cookie(session: &str) -> String {
    format!("{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_token_and_cookie() {
        let auth = Auth::new(vec![Account {
            user: "dr.li".into(),
            password_hash: hash_password("s3cret").unwrap(),
        }]);
        assert!(auth.login("dr.li", "wrong").is_none());
        assert!(auth.login("nobody", "s3cret").is_none());
        let s = auth.login("dr.li", "s3cret").unwrap();
        assert_eq!(auth.user(&s).as_deref(), Some("dr.li"));
        auth.logout(&s);
        assert!(auth.user(&s).is_none());
        let t = auth.issue_one_time();
        assert!(auth.redeem("nope").is_none());
        assert!(auth.redeem(&t).is_some());
        assert!(auth.redeem(&t).is_none(), "one-time tokens work once");
        assert_eq!(
            session_from_cookie("a=b; ecg_session=xyz; c=d"),
            Some("xyz")
        );
    }
}
