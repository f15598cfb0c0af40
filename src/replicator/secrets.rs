//! Credentials in link configs (`sasl.jaas.config`, key material) are sealed with
//! ChaCha20-Poly1305 before they are written to the metadata topic, so whoever can read
//! that topic cannot read them. The key is 32 bytes, hex or base64, in the file named
//! by `[replicator] secret_key_file`.
//!
//! Each value is sealed with its record key and config key as associated data
//! (`link/<name>` NUL `<config key>`): a sealed value copied into another link's record,
//! or under another config key, does not open.

use std::collections::BTreeMap;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use super::link_config::SECRET_KEYS;

const PREFIX: &str = "sealed:v2:";
/// Sealed without associated data by earlier versions: refused, as such a value could
/// have been moved from another link.
const UNBOUND_PREFIX: &str = "sealed:v1:";
const NONCE_LEN: usize = 12;

#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "replicator.secret_key_file: cannot read '{}': {e}",
                path.display()
            )
        })?;
        let text = text.trim();
        let key = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|e| e.to_string())?
        } else {
            B64.decode(text).map_err(|_| {
                "replicator.secret_key_file: neither 64 hex digits nor base64".to_string()
            })?
        };
        if key.len() != 32 {
            return Err(format!(
                "replicator.secret_key_file: the key has {} bytes, not 32",
                key.len()
            ));
        }
        Ok(Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        })
    }

    fn seal(&self, value: &str, aad: &[u8]) -> Result<String, String> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: value.as_bytes(),
            aad,
        };
        let sealed = self
            .cipher
            .encrypt(&nonce, payload)
            .map_err(|e| e.to_string())?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        Ok(format!("{PREFIX}{}", B64.encode(out)))
    }

    fn open(&self, value: &str, aad: &[u8]) -> Result<String, String> {
        let Some(body) = value.strip_prefix(PREFIX) else {
            return Ok(value.to_string());
        };
        let raw = B64
            .decode(body)
            .map_err(|_| "a sealed secret is not base64".to_string())?;
        if raw.len() < NONCE_LEN {
            return Err("a sealed secret is too short".into());
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
            .map_err(|_| {
                "a sealed secret does not open with this key (or was moved from another link)"
                    .to_string()
            })?;
        String::from_utf8(plain).map_err(|_| "a sealed secret is not UTF-8".to_string())
    }
}

/// What a sealed value is bound to: its record key and its config key.
fn associated_data(record_key: &str, config_key: &str) -> Vec<u8> {
    [record_key.as_bytes(), &[0], config_key.as_bytes()].concat()
}

/// The config as stored under `record_key`: secret values sealed. Without a key,
/// secrets cannot be stored.
pub fn seal_config(
    config: &BTreeMap<String, String>,
    sealer: Option<&Sealer>,
    record_key: &str,
) -> Result<BTreeMap<String, String>, String> {
    config
        .iter()
        .map(|(k, v)| {
            if !SECRET_KEYS.contains(&k.as_str()) {
                return Ok((k.clone(), v.clone()));
            }
            let sealer = sealer.ok_or_else(|| {
                format!(
                    "{k}: storing credentials needs [replicator] secret_key_file (a 32-byte key)"
                )
            })?;
            Ok((k.clone(), sealer.seal(v, &associated_data(record_key, k))?))
        })
        .collect()
}

/// The config as read back from under `record_key`: sealed values opened.
pub fn open_config(
    config: &BTreeMap<String, String>,
    sealer: Option<&Sealer>,
    record_key: &str,
) -> Result<BTreeMap<String, String>, String> {
    config
        .iter()
        .map(|(k, v)| match (v.starts_with(PREFIX), sealer) {
            _ if v.starts_with(UNBOUND_PREFIX) => Err(format!(
                "{k}: sealed by an older version without binding it to the link; set it again with cluster-links --alter"
            )),
            (false, _) => Ok((k.clone(), v.clone())),
            (true, Some(sealer)) => sealer
                .open(v, &associated_data(record_key, k))
                .map(|plain| (k.clone(), plain))
                .map_err(|e| format!("{k}: {e}")),
            (true, None) => Err(format!(
                "{k}: sealed, and no [replicator] secret_key_file is set"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_and_never_appear_in_the_stored_form() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(
            &key,
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
        )
        .unwrap();
        let sealer = Sealer::from_file(&key).unwrap();
        let mut config = BTreeMap::new();
        config.insert("bootstrap.servers".to_string(), "h:1".to_string());
        config.insert(
            "sasl.jaas.config".to_string(),
            "password=\"hunter2\";".to_string(),
        );
        let stored = seal_config(&config, Some(&sealer), "link/a").unwrap();
        assert_eq!(stored["bootstrap.servers"], "h:1");
        assert!(!stored["sasl.jaas.config"].contains("hunter2"));
        assert_eq!(
            open_config(&stored, Some(&sealer), "link/a").unwrap(),
            config
        );
        assert!(seal_config(&config, None, "link/a")
            .unwrap_err()
            .contains("secret_key_file"));
        let other = dir.path().join("other");
        std::fs::write(&other, B64.encode([7u8; 32])).unwrap();
        assert!(open_config(&stored, Some(&Sealer::from_file(&other).unwrap()), "link/a").is_err());
    }

    #[test]
    fn a_sealed_value_moved_to_another_link_or_key_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, B64.encode([9u8; 32])).unwrap();
        let sealer = Sealer::from_file(&key).unwrap();
        let config = BTreeMap::from([("sasl.jaas.config".to_string(), "secret".to_string())]);
        let stored = seal_config(&config, Some(&sealer), "link/a").unwrap();
        let moved = open_config(&stored, Some(&sealer), "link/b").unwrap_err();
        assert!(moved.contains("moved from another link"), "{moved}");
        let under_other_key = BTreeMap::from([(
            "ssl.keystore.password".to_string(),
            stored["sasl.jaas.config"].clone(),
        )]);
        assert!(open_config(&under_other_key, Some(&sealer), "link/a").is_err());
        let unbound =
            BTreeMap::from([("sasl.jaas.config".to_string(), "sealed:v1:AAAA".to_string())]);
        let old = open_config(&unbound, Some(&sealer), "link/a").unwrap_err();
        assert!(old.contains("cluster-links --alter"), "{old}");
    }
}
