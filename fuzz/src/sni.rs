//! Target `sni`: the proxy's routing (`config::routing`): TLS server names mapped to
//! brokers under SNI routing, and broker addresses under both routings. Input: the
//! first 4 bytes are a node id, the rest fields separated by 0x00 bytes: the broker
//! pattern's prefix and suffix (around `$(node_id)`), the bootstrap host, a server name.
//!
//! Properties: nothing panics; a server name that maps to broker N is exactly broker
//! N's advertised host (case aside), and broker N's advertised host maps back to N
//! (unless it is the bootstrap host, which wins); port routing gives node N the port
//! base + N when that is a port, and no address otherwise.

use mirrorgate::config::routing::Routing;
use mirrorgate::config::RoutingMode;
use mirrorgate::proxy::Target;

use crate::config;

pub fn check(data: &[u8]) {
    let Some((id, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let node_id = i32::from_be_bytes(*id);
    let text = String::from_utf8_lossy(rest);
    let mut fields = text.split('\0');
    let prefix = fields.next().unwrap_or_default();
    let suffix = fields.next().unwrap_or_default();
    let bootstrap = fields.next().unwrap_or_default();
    let name = fields.next().unwrap_or_default();

    port_routing(node_id, u16::from_be_bytes([id[1], id[3]]));

    let pattern = format!("{prefix}$(node_id){suffix}");
    // Config validation accepts only patterns with exactly one placeholder.
    if pattern.matches("$(node_id)").count() != 1 {
        return;
    }
    let mut proxy = config().proxy.clone();
    proxy.routing = RoutingMode::Sni;
    proxy.sni_broker_pattern = Some(pattern);
    proxy.sni_bootstrap_host = Some(bootstrap.to_string());
    let routing = Routing::from_config(&proxy).expect("SNI routing from a valid pattern");
    let sni = routing.sni().expect("SNI routing");
    let bootstrap = bootstrap.to_ascii_lowercase();

    if let Some(Target::Broker(id)) = sni.target_of(name) {
        let (host, _, listen) = routing.address_of(id).expect("a broker it routes to");
        assert_eq!(host, name.to_ascii_lowercase());
        assert!(listen.is_none());
    }
    for id in [node_id, node_id.wrapping_abs(), 0, i32::MAX] {
        match routing.address_of(id) {
            Some((host, _, _)) => {
                assert!(id >= 0);
                let expect = if host == bootstrap {
                    Target::Bootstrap
                } else {
                    Target::Broker(id)
                };
                assert_eq!(sni.target_of(&host), Some(expect), "{host}");
            }
            None => assert!(id < 0),
        }
    }
}

fn port_routing(node_id: i32, port_base: u16) {
    let mut proxy = config().proxy.clone();
    proxy.broker_port_base = port_base;
    let routing = Routing::from_config(&proxy).unwrap();
    let expect = i64::from(port_base) + i64::from(node_id);
    match routing.address_of(node_id) {
        Some((_, port, Some(listen))) => {
            assert!(node_id >= 0);
            assert_eq!(i64::from(port), expect);
            assert_eq!(i64::from(listen.port()), expect);
        }
        Some((_, _, None)) => panic!("port routing without a listener"),
        None => assert!(node_id < 0 || expect > i64::from(u16::MAX)),
    }
}
