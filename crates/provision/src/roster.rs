//! The identities that may connect to the broker, with fresh passwords.

use std::fmt;

use crate::password::{generate_password, PasswordError};

/// What an identity is allowed to do on the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A clinic device: writes its own visits, reads its own results.
    Device,
    /// The ingestion/triage pipeline: reads every device, writes results,
    /// alerts and dead letters.
    Pipeline,
    /// The chest-pain centre: reads alerts, writes acknowledgements.
    Cardiologist,
    /// Whoever runs the system: reads the dead letters (refused input,
    /// whose payload prefix may hold anything a device sent), nothing else.
    Operator,
    /// `ecgtriage quarantine replay`: writes what any device may write
    /// (meta, chunks, ends), reads nothing. Made only on request: it can
    /// speak for every device.
    Replay,
}

impl Role {
    /// The name used in `services.csv`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Device => "device",
            Role::Pipeline => "pipeline",
            Role::Cardiologist => "cardiologist",
            Role::Operator => "operator",
            Role::Replay => "replay",
        }
    }
}

/// One broker user. `Debug` never shows the password, so a roster can be
/// logged or put in an error message without leaking it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub role: Role,
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("role", &self.role)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Every identity of one provisioning run.
#[derive(Debug, Clone)]
pub struct Roster {
    pub devices: Vec<Credential>,
    pub services: Vec<Credential>,
}

/// `dev-0001`: four digits keep ids sortable up to 9999 devices; larger
/// fleets simply get more digits.
pub fn device_id(n: usize) -> String {
    format!("dev-{n:04}")
}

impl Roster {
    /// `count` devices `dev-0001..` plus one `pipeline`, one `cardiologist`
    /// and one `operator` user, each with its own random password.
    pub fn generate(count: usize, password_len: usize) -> Result<Roster, PasswordError> {
        let cred = |role, user: String| -> Result<Credential, PasswordError> {
            Ok(Credential {
                role,
                user,
                password: generate_password(password_len)?,
            })
        };
        let devices = (1..=count)
            .map(|n| cred(Role::Device, device_id(n)))
            .collect::<Result<Vec<_>, _>>()?;
        let services = vec![
            cred(Role::Pipeline, "pipeline".to_owned())?,
            cred(Role::Cardiologist, "cardiologist".to_owned())?,
            cred(Role::Operator, "operator".to_owned())?,
        ];
        Ok(Roster { devices, services })
    }

    /// Adds a `replay` user ([`Role::Replay`]) with its own password.
    pub fn with_replay(mut self, password_len: usize) -> Result<Roster, PasswordError> {
        self.services.push(Credential {
            role: Role::Replay,
            user: "replay".to_owned(),
            password: generate_password(password_len)?,
        });
        Ok(self)
    }

    /// Every credential, devices first.
    pub fn all(&self) -> impl Iterator<Item = &Credential> {
        self.devices.iter().chain(&self.services)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roster_numbers_devices_and_adds_the_services() {
        let r = Roster::generate(3, 20).unwrap();
        let ids: Vec<_> = r.devices.iter().map(|c| c.user.as_str()).collect();
        assert_eq!(ids, ["dev-0001", "dev-0002", "dev-0003"]);
        let roles: Vec<_> = r.services.iter().map(|c| c.role).collect();
        assert_eq!(roles, [Role::Pipeline, Role::Cardiologist, Role::Operator]);
        let mut passwords: Vec<_> = r.all().map(|c| c.password.clone()).collect();
        passwords.sort();
        passwords.dedup();
        assert_eq!(passwords.len(), 6, "every identity has its own password");
        assert!(r.all().all(|c| c.password.len() == 20));
    }

    #[test]
    fn a_replay_user_is_made_only_on_request() {
        let r = Roster::generate(1, 20).unwrap();
        assert!(r.all().all(|c| c.role != Role::Replay));
        let r = r.with_replay(20).unwrap();
        let replay: Vec<_> = r.all().filter(|c| c.role == Role::Replay).collect();
        assert_eq!(replay.len(), 1);
        assert_eq!(replay[0].user, "replay");
        assert!(r
            .all()
            .filter(|c| c.role != Role::Replay)
            .all(|c| c.password != replay[0].password));
    }

    #[test]
    fn debug_output_hides_passwords() {
        let r = Roster::generate(2, 32).unwrap();
        let shown = format!("{r:?}");
        assert!(shown.contains("dev-0002"));
        for c in r.all() {
            assert!(!shown.contains(&c.password));
        }
    }

    #[test]
    fn zero_devices_still_gives_services() {
        let r = Roster::generate(0, 16).unwrap();
        assert!(r.devices.is_empty());
        assert_eq!(r.services.len(), 3);
    }
}
