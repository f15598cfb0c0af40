//! The `[admin]` table: where the admin HTTP API listens and who may call it (a bearer
//! token, the Host names and browser Origins it accepts).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_bind")]
    pub bind: String,
    /// File holding the bearer token every request but /healthz and /readyz must carry.
    /// Required when `bind` is not a loopback address.
    pub token_file: Option<PathBuf>,
    /// Host names (or name:port) accepted in the Host header besides the bind address
    /// and the loopback names, e.g. the name a reverse proxy forwards.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Browser origins (`scheme://host[:port]`) allowed to send state-changing requests.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// The token read from `token_file` when the config was loaded; never serialized.
    #[serde(skip)]
    pub token: Option<AdminToken>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            bind: default_bind(),
            token_file: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            token: None,
        }
    }
}

fn default_bind() -> String {
    "127.0.0.1:8090".to_string()
}

/// A bearer token; its Debug output hides it so it never reaches a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    pub fn new(token: String) -> Self {
        Self(token)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

/// The token in `path`, trailing whitespace (a final newline) trimmed.
pub fn read_token_file(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let token = text.trim_end();
    if token.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(token.to_string())
}

impl AdminConfig {
    /// Reads the token file (at load and at every reload, so a rotated token applies).
    pub(super) fn read_token(&mut self) -> Result<(), String> {
        self.token = match &self.token_file {
            None => None,
            Some(path) => Some(AdminToken(
                read_token_file(path).map_err(|e| format!("admin.token_file: {e}"))?,
            )),
        };
        Ok(())
    }

    pub(super) fn validate(&self, errors: &mut Vec<String>) {
        match self.bind.parse::<SocketAddr>() {
            Err(_) => errors.push(format!(
                "admin.bind: '{}' is not an ip:port socket address",
                self.bind
            )),
            Ok(bind) => errors.extend(exposure_error(bind, self)),
        }
        for (i, host) in self.allowed_hosts.iter().enumerate() {
            if !valid_allowed_host(host) {
                errors.push(format!(
                    "admin.allowed_hosts[{i}]: '{host}' is not a host name or host:port"
                ));
            }
        }
        for (i, origin) in self.allowed_origins.iter().enumerate() {
            if !valid_origin(origin) {
                errors.push(format!(
                    "admin.allowed_origins[{i}]: '{origin}' is not scheme://host[:port] (http or https, no path)"
                ));
            }
        }
    }
}

/// An admin listener on `bind` reachable from other machines needs a token: refused at
/// start, and at reload against the address actually listened on (it does not move
/// without a restart).
pub fn exposure_error(bind: SocketAddr, admin: &AdminConfig) -> Option<String> {
    (!bind.ip().is_loopback() && admin.token_file.is_none()).then(|| {
        format!(
            "admin.bind: {bind} is not a loopback address; set admin.token_file so the admin API requires a bearer token"
        )
    })
}

fn valid_allowed_host(entry: &str) -> bool {
    let (host, port) = split_host_port(entry);
    super::valid_host(host.trim_matches(['[', ']']))
        && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// `name`, `name:port`, `[v6]`, `[v6]:port`; a bare IPv6 address is all host.
pub fn split_host_port(text: &str) -> (&str, Option<&str>) {
    if let Some(rest) = text.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, tail)) => (host, Some(tail.strip_prefix(':').unwrap_or(tail))),
            None => (text, None),
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (text, None),
    }
}

fn valid_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https") && !rest.contains('/') && valid_allowed_host(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(bind: &str) -> AdminConfig {
        AdminConfig {
            bind: bind.into(),
            ..Default::default()
        }
    }

    fn errors(admin: &AdminConfig) -> Vec<String> {
        let mut errors = Vec::new();
        admin.validate(&mut errors);
        errors
    }

    #[test]
    fn a_non_loopback_bind_needs_a_token_file() {
        assert!(errors(&admin("127.0.0.1:8090")).is_empty());
        assert!(errors(&admin("[::1]:8090")).is_empty());
        for bind in ["0.0.0.0:8090", "10.1.2.3:8090", "[::]:8090"] {
            let found = errors(&admin(bind));
            assert!(found[0].starts_with("admin.bind:"), "{found:?}");
        }
        let mut with_token = admin("0.0.0.0:8090");
        with_token.token_file = Some("t".into());
        assert!(errors(&with_token).is_empty());
    }

    #[test]
    fn hosts_and_origins_are_checked_naming_the_entry() {
        let mut a = admin("127.0.0.1:8090");
        a.allowed_hosts = vec!["mg.example.com".into(), "mg:80".into(), "bad host".into()];
        a.allowed_origins = vec![
            "https://ops.example.com".into(),
            "http://[::1]:3000".into(),
            "https://x.com/path".into(),
            "ftp://x.com".into(),
        ];
        let found = errors(&a);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].starts_with("admin.allowed_hosts[2]"), "{found:?}");
        assert!(
            found[1].starts_with("admin.allowed_origins[2]"),
            "{found:?}"
        );
        assert!(
            found[2].starts_with("admin.allowed_origins[3]"),
            "{found:?}"
        );
    }

    #[test]
    fn the_token_is_trimmed_and_an_empty_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret \n").unwrap();
        let mut a = admin("127.0.0.1:8090");
        a.token_file = Some(path.clone());
        a.read_token().unwrap();
        assert_eq!(a.token.as_ref().map(AdminToken::expose), Some("s3cret"));
        assert_eq!(format!("{:?}", a.token), "Some(AdminToken(***))");
        std::fs::write(&path, " \n").unwrap();
        let err = a.read_token().unwrap_err();
        assert!(err.starts_with("admin.token_file:"), "{err}");
    }

    #[test]
    fn host_and_port_are_split_for_names_and_ipv6() {
        assert_eq!(split_host_port("localhost"), ("localhost", None));
        assert_eq!(split_host_port("localhost:80"), ("localhost", Some("80")));
        assert_eq!(split_host_port("[::1]:80"), ("::1", Some("80")));
        assert_eq!(split_host_port("[::1]"), ("::1", None));
        assert_eq!(split_host_port("::1"), ("::1", None));
    }
}
