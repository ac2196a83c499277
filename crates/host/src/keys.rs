//! Function keys, as Azure Functions has them: host keys open every route, a function's keys
//! open that function. Keys are stored only as SHA-256 hashes and compared in constant time; the
//! key itself is shown once, when it is created.
//!
//! The key file (`.baton/keys.json` by default) is written by `baton keys create|revoke` and read
//! by `baton serve` at start-up.

use std::collections::BTreeMap;
use std::path::Path;

use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// Who a presented key turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A host key: every route.
    Host(String),
    /// A key of this function (lower-cased name).
    Function { function: String, key: String },
}

/// One stored key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub name: String,
    /// Hex SHA-256 of the key.
    pub sha256: String,
    pub created: String,
}

/// All keys of a host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keys {
    #[serde(default)]
    pub host: Vec<KeyRecord>,
    /// By function name, lower-cased (function names are case-insensitive).
    #[serde(default)]
    pub functions: BTreeMap<String, Vec<KeyRecord>>,
}

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("no key named `{0}`")]
    Unknown(String),
    #[error("the system's random number generator failed")]
    Random,
}

fn sha256_hex(key: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn matches(record: &KeyRecord, presented_hash: &str) -> bool {
    record
        .sha256
        .as_bytes()
        .ct_eq(presented_hash.as_bytes())
        .into()
}

impl Keys {
    /// Reads the key file; a missing file is an empty set of keys.
    pub fn load(path: &Path) -> Result<Self, KeysError> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| KeysError::File {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(KeysError::File {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        }
    }

    /// Writes the key file (owner-only permissions on Unix).
    pub fn save(&self, path: &Path) -> Result<(), KeysError> {
        let fail = |e: std::io::Error| KeysError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| KeysError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(fail)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
        }
        std::fs::rename(&tmp, path).map_err(fail)
    }

    /// True when no key exists at all (local development mode on a loopback address).
    pub fn is_empty(&self) -> bool {
        self.host.is_empty() && self.functions.values().all(Vec::is_empty)
    }

    /// Creates a key named `name` for `function` (`None` for a host key) and returns the key.
    pub fn create(
        &mut self,
        function: Option<&str>,
        name: &str,
        created: &str,
    ) -> Result<String, KeysError> {
        let mut bytes = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| KeysError::Random)?;
        let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let record = KeyRecord {
            name: name.to_owned(),
            sha256: sha256_hex(&key),
            created: created.to_owned(),
        };
        let list = match function {
            None => &mut self.host,
            Some(f) => self.functions.entry(f.to_ascii_lowercase()).or_default(),
        };
        list.retain(|r| r.name != name);
        list.push(record);
        Ok(key)
    }

    /// Removes the key named `name` of `function` (or the host key).
    pub fn revoke(&mut self, function: Option<&str>, name: &str) -> Result<(), KeysError> {
        let list = match function {
            None => &mut self.host,
            Some(f) => self
                .functions
                .get_mut(&f.to_ascii_lowercase())
                .ok_or_else(|| KeysError::Unknown(name.to_owned()))?,
        };
        let before = list.len();
        list.retain(|r| r.name != name);
        if list.len() == before {
            return Err(KeysError::Unknown(name.to_owned()));
        }
        Ok(())
    }

    /// Identifies a presented key. Every stored hash of the relevant scope is compared, in
    /// constant time, so timing tells nothing about which keys exist.
    pub fn identify(&self, presented: &str, function: Option<&str>) -> Option<Caller> {
        let hash = sha256_hex(presented);
        let mut found = None;
        for r in &self.host {
            if matches(r, &hash) && found.is_none() {
                found = Some(Caller::Host(r.name.clone()));
            }
        }
        if let Some(f) = function {
            let f = f.to_ascii_lowercase();
            for r in self.functions.get(&f).into_iter().flatten() {
                if matches(r, &hash) && found.is_none() {
                    found = Some(Caller::Function {
                        function: f.clone(),
                        key: r.name.clone(),
                    });
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stored_hashed_and_identified() {
        let mut k = Keys::default();
        let host = k.create(None, "master", "t").expect("key");
        let own = k.create(Some("Validate"), "default", "t").expect("key");
        let other = k.create(Some("CheckZip"), "default", "t").expect("key");
        assert_eq!(host.len(), 64);
        let text = serde_json::to_string(&k).expect("json");
        assert!(
            !text.contains(&host) && !text.contains(&own),
            "keys must not be stored in clear"
        );
        assert_eq!(
            k.identify(&host, Some("validate")),
            Some(Caller::Host("master".into()))
        );
        assert!(matches!(
            k.identify(&own, Some("VALIDATE")),
            Some(Caller::Function { .. })
        ));
        assert_eq!(k.identify(&other, Some("Validate")), None);
        assert_eq!(k.identify("wrong", Some("Validate")), None);
    }

    #[test]
    fn revoked_keys_stop_working_and_files_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys.json");
        let mut k = Keys::default();
        let key = k.create(Some("F"), "a", "t").expect("key");
        k.save(&path).expect("save");
        let mut loaded = Keys::load(&path).expect("load");
        assert_eq!(loaded, k);
        loaded.revoke(Some("f"), "a").expect("revoke");
        assert_eq!(loaded.identify(&key, Some("F")), None);
        assert!(loaded.revoke(Some("f"), "a").is_err());
        assert!(
            Keys::load(&dir.path().join("absent.json"))
                .expect("empty")
                .is_empty()
        );
    }
}
