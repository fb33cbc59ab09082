//! Broker credentials for a fleet: who may connect to Mosquitto and what
//! each identity may publish or read.
//!
//! - [`password`]: random passwords from the operating system's CSPRNG.
//! - [`roster`]: the identities (devices `dev-0001`…, the `pipeline`,
//!   `cardiologist` and `operator` services) with their passwords; secrets
//!   are redacted from `Debug`.
//! - [`acl`]: the Mosquitto ACL that confines each identity to its topics.
//! - [`bundle`]: writes `devices.csv`, `services.csv`, `mosquitto.passwd`
//!   (hashed by `mosquitto_passwd -U`) and `mosquitto.acl`, all mode 0600.

pub mod acl;
pub mod bundle;
pub mod password;
pub mod roster;

pub use acl::render_acl;
pub use bundle::{write_bundle, Bundle, BundleError};
pub use password::{generate_password, PasswordError, MIN_PASSWORD_LEN};
pub use roster::{Credential, Role, Roster};
