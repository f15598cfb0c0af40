//! How clients reach each destination broker through the proxy: a port per broker on
//! the proxy's address, or (with TLS) one port and a server name per broker (SNI).

use std::net::{IpAddr, SocketAddr};

use super::{ProxyConfig, RoutingMode};

const NODE_ID: &str = "$(node_id)";

/// Where a connection goes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Any destination bootstrap server.
    Bootstrap,
    /// The destination broker with this node id.
    Broker(i32),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Bootstrap => f.write_str("bootstrap"),
            Target::Broker(id) => write!(f, "broker-{id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniRouting {
    bootstrap_host: String,
    prefix: String,
    suffix: String,
    port: u16,
}

impl SniRouting {
    /// The target a TLS server name asks for; `None` for names the routing does not know.
    pub fn target_of(&self, server_name: &str) -> Option<Target> {
        let name = server_name.to_ascii_lowercase();
        if name == self.bootstrap_host {
            return Some(Target::Bootstrap);
        }
        let id = name
            .strip_prefix(&self.prefix)?
            .strip_suffix(&self.suffix)?;
        // Plain decimal only: "01" or "+1" would make two names for one broker.
        if id.is_empty()
            || !id.bytes().all(|b| b.is_ascii_digit())
            || (id.len() > 1 && id.starts_with('0'))
        {
            return None;
        }
        id.parse().ok().map(Target::Broker)
    }

    fn broker_host(&self, node_id: i32) -> String {
        format!("{}{node_id}{}", self.prefix, self.suffix)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    PortPerBroker {
        advertised_host: String,
        port_base: u16,
        bind_ip: IpAddr,
    },
    Sni(SniRouting),
}

impl Routing {
    /// From a validated config (validation guarantees the SNI keys are present).
    pub fn from_config(proxy: &ProxyConfig) -> Option<Routing> {
        let bind: SocketAddr = proxy.bind.parse().ok()?;
        Some(match proxy.routing {
            RoutingMode::Port => Routing::PortPerBroker {
                advertised_host: proxy.advertised_host.clone(),
                port_base: proxy.broker_port_base,
                bind_ip: bind.ip(),
            },
            RoutingMode::Sni => {
                let pattern = proxy.sni_broker_pattern.as_deref()?.to_ascii_lowercase();
                let (prefix, suffix) = pattern.split_once(NODE_ID)?;
                Routing::Sni(SniRouting {
                    bootstrap_host: proxy.sni_bootstrap_host.as_deref()?.to_ascii_lowercase(),
                    prefix: prefix.to_string(),
                    suffix: suffix.to_string(),
                    port: bind.port(),
                })
            }
        })
    }

    pub fn sni(&self) -> Option<&SniRouting> {
        match self {
            Routing::Sni(sni) => Some(sni),
            Routing::PortPerBroker { .. } => None,
        }
    }

    /// The address clients get for broker `node_id`, and (port routing) the socket
    /// address of its listener.
    pub fn address_of(&self, node_id: i32) -> Option<(String, i32, Option<SocketAddr>)> {
        match self {
            Routing::PortPerBroker {
                advertised_host,
                port_base,
                bind_ip,
            } => {
                let port = u16::try_from(i64::from(*port_base) + i64::from(node_id))
                    .ok()
                    .filter(|_| node_id >= 0)?;
                let listen = SocketAddr::new(*bind_ip, port);
                Some((advertised_host.clone(), i32::from(port), Some(listen)))
            }
            Routing::Sni(sni) => {
                (node_id >= 0).then(|| (sni.broker_host(node_id), i32::from(sni.port), None))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sni() -> SniRouting {
        SniRouting {
            bootstrap_host: "bootstrap.kafka.example.test".into(),
            prefix: "broker-".into(),
            suffix: ".kafka.example.test".into(),
            port: 9092,
        }
    }

    #[test]
    fn sni_names_map_to_targets() {
        let r = sni();
        assert_eq!(
            r.target_of("bootstrap.kafka.example.test"),
            Some(Target::Bootstrap)
        );
        assert_eq!(
            r.target_of("BROKER-2.kafka.example.test"),
            Some(Target::Broker(2))
        );
        assert_eq!(
            r.target_of("broker-12.kafka.example.test"),
            Some(Target::Broker(12))
        );
        for unknown in [
            "broker-.kafka.example.test",
            "broker-01.kafka.example.test",
            "broker-x.kafka.example.test",
            "other.test",
            "",
        ] {
            assert_eq!(r.target_of(unknown), None, "{unknown}");
        }
        assert_eq!(r.broker_host(3), "broker-3.kafka.example.test");
    }
}
