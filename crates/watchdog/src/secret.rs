//! Secrets in configuration (ZooKeeper and SMTP passwords, webhook signing keys): read from an
//! environment variable or a file, never printed.

use std::path::Path;

use crate::configfile::Problems;
pub use crate::registry::Secret;

/// Reads a secret from the environment variable named by `env` or from the file `file`
/// (relative to `base`): exactly one of them, or neither (`None`). Problems are recorded under
/// the key that caused them (`env_key`, `file_key`).
pub fn read_secret(
    p: &mut Problems,
    env_key: &str,
    env: Option<&str>,
    file_key: &str,
    file: Option<&str>,
    base: &Path,
) -> Option<Secret> {
    match (env, file) {
        (Some(_), Some(_)) => {
            p.add(
                env_key,
                format!("give either {env_key} or {file_key}, not both"),
            );
            None
        }
        (Some(var), None) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Some(Secret(v)),
            _ => {
                p.add(env_key, format!("environment variable {var} is not set"));
                None
            }
        },
        (None, Some(f)) => {
            let path = base.join(f);
            match std::fs::read_to_string(&path) {
                Ok(v) => Some(Secret(v.trim_end_matches(['\r', '\n']).to_string())),
                Err(e) => {
                    p.add(file_key, format!("cannot read {}: {e}", path.display()));
                    None
                }
            }
        }
        (None, None) => None,
    }
}
