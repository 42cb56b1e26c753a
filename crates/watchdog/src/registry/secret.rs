//! A secret (a ZooKeeper or SMTP password, a private key, a signing key) that `Debug` never
//! shows. Reading one from the environment or a file is configuration's job
//! ([`crate::secret::read_secret`]).

use std::fmt;

/// A secret; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}
