//! Keeps web pages out of the admin API. A page in an operator's browser can send
//! requests to 127.0.0.1 (a "simple" cross-origin POST needs no CORS preflight) and,
//! with DNS rebinding, read the answers under its own host name. So: the Host header
//! must name this listener (refuses rebinding: 403), and a state-changing request must
//! carry `Content-Type: application/json` (a form or no-cors fetch cannot: 415) and no
//! foreign `Origin` (403).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::{json_error, Access};
use crate::config::admin::split_host_port;

pub(crate) async fn browser_guard(
    State(access): State<Access>,
    request: Request,
    next: Next,
) -> Response {
    let admin = (access.settings)();
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(String::from)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    let Some(host) = host else {
        return json_error(StatusCode::FORBIDDEN, "a Host header is required");
    };
    if !host_allowed(&host, access.bind, &admin.allowed_hosts) {
        return json_error(
            StatusCode::FORBIDDEN,
            format!("Host '{host}' is not this admin listener; list it in admin.allowed_hosts"),
        );
    }
    if !request.method().is_safe() {
        if let Some(origin) = foreign_origin(request.headers(), &admin.allowed_origins) {
            return json_error(
                StatusCode::FORBIDDEN,
                format!(
                    "Origin '{origin}' may not change anything; list it in admin.allowed_origins"
                ),
            );
        }
        if !is_json(request.headers()) {
            return json_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "a state-changing request needs Content-Type: application/json",
            );
        }
    }
    next.run(request).await
}

/// Loopback names on any port (port forwarding changes it), the bound address on its
/// port, any address literal when bound to every interface (a rebinding page's Host is
/// always a name), and the names of `allowed` (with their port, when one is given).
fn host_allowed(host: &str, bind: SocketAddr, allowed: &[String]) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let (name, port) = split_host_port(&host);
    let port = match port.map(str::parse::<u16>) {
        None => None,
        Some(Ok(port)) => Some(port),
        Some(Err(_)) => return false,
    };
    if matches!(name, "localhost" | "127.0.0.1" | "::1") {
        return true;
    }
    if let Ok(ip) = name.parse::<IpAddr>() {
        if ip == bind.ip() || bind.ip().is_unspecified() {
            return port.is_none_or(|p| p == bind.port());
        }
    }
    allowed.iter().any(|entry| {
        let entry = entry.to_ascii_lowercase();
        let (allowed_name, allowed_port) = split_host_port(&entry);
        allowed_name == name
            && allowed_port.is_none_or(|p| p.parse::<u16>().ok() == Some(port.unwrap_or(80)))
    })
}

/// The request's Origin when it is present and not allowed (`null` included).
fn foreign_origin(headers: &HeaderMap, allowed: &[String]) -> Option<String> {
    let origin = headers.get(header::ORIGIN)?;
    let origin = String::from_utf8_lossy(origin.as_bytes()).to_string();
    let wanted = origin.trim_end_matches('/');
    let listed = allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(wanted));
    (!listed).then_some(origin)
}

/// `application/json`, parameters such as `; charset=utf-8` allowed.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::tests::{app, send};
    use axum::http::Method;

    fn bind() -> SocketAddr {
        "127.0.0.1:8090".parse().unwrap()
    }

    #[test]
    fn loopback_names_and_the_bind_address_are_hosts_of_this_listener() {
        let none: &[String] = &[];
        for host in [
            "localhost",
            "LOCALHOST:9000",
            "127.0.0.1",
            "127.0.0.1:8090",
            "[::1]",
            "[::1]:8090",
        ] {
            assert!(host_allowed(host, bind(), none), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8090",
            "localhost.evil.example",
            "127.0.0.1.nip.io:8090",
            "localhost:notaport",
            "10.0.0.5:8090",
            "",
        ] {
            assert!(!host_allowed(host, bind(), none), "{host}");
        }
    }

    #[test]
    fn a_specific_or_unspecified_bind_accepts_its_address_on_its_port() {
        let none: &[String] = &[];
        let v6: SocketAddr = "[fd00::5]:8090".parse().unwrap();
        assert!(host_allowed("[fd00::5]:8090", v6, none));
        assert!(host_allowed("[FD00::5]", v6, none));
        assert!(!host_allowed("[fd00::5]:8091", v6, none));
        assert!(!host_allowed("[fd00::6]:8090", v6, none));
        let any: SocketAddr = "0.0.0.0:8090".parse().unwrap();
        assert!(host_allowed("10.0.0.5:8090", any, none));
        assert!(!host_allowed("10.0.0.5:8091", any, none));
        assert!(!host_allowed("mg.internal:8090", any, none));
    }

    #[test]
    fn allowed_hosts_match_by_name_and_by_port_when_given() {
        let allowed = vec!["mg.internal".to_string(), "ops.example:8443".to_string()];
        assert!(host_allowed("mg.internal", bind(), &allowed));
        assert!(host_allowed("MG.internal:1234", bind(), &allowed));
        assert!(host_allowed("ops.example:8443", bind(), &allowed));
        assert!(!host_allowed("ops.example:8444", bind(), &allowed));
        assert!(!host_allowed("ops.example", bind(), &allowed));
        assert!(!host_allowed("other.internal", bind(), &allowed));
    }

    #[tokio::test]
    async fn a_foreign_host_is_refused_and_a_missing_one_too() {
        let app = app(None, &[], &[]);
        let (status, body) = send(&app, Method::GET, "/x", &[("host", "evil.example")]).await;
        assert_eq!(status, 403);
        assert_eq!(body["error_code"], 403);
        assert!(body["message"].as_str().unwrap().contains("evil.example"));
        let (status, _) = send(&app, Method::GET, "/x", &[]).await;
        assert_eq!(status, 403);
        let (status, _) = send(&app, Method::GET, "/x", &[("host", "localhost:8090")]).await;
        assert_eq!(status, 200);
        // Probes answer whatever the Host.
        let (status, _) = send(&app, Method::GET, "/healthz", &[("host", "10.9.9.9")]).await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn state_changes_need_json_and_no_foreign_origin() {
        let allowed = ["https://ops.example".to_string()];
        let app = app(None, &[], &allowed);
        let local = ("host", "127.0.0.1:8090");
        let json = ("content-type", "application/json; charset=utf-8");
        let form = ("content-type", "application/x-www-form-urlencoded");
        let (status, _) = send(&app, Method::POST, "/x", &[local, json]).await;
        assert_eq!(status, 200);
        let (status, body) = send(&app, Method::POST, "/x", &[local, form]).await;
        assert_eq!((status, body["error_code"].as_u64()), (415, Some(415)));
        let (status, _) = send(&app, Method::DELETE, "/x", &[local]).await;
        assert_eq!(status, 415);
        let evil = ("origin", "https://evil.example");
        let (status, _) = send(&app, Method::POST, "/x", &[local, json, evil]).await;
        assert_eq!(status, 403);
        let (status, _) = send(&app, Method::PUT, "/x", &[local, form, evil]).await;
        assert_eq!(status, 403);
        let (status, _) = send(&app, Method::POST, "/x", &[local, json, ("origin", "null")]).await;
        assert_eq!(status, 403);
        let ops = ("origin", "https://ops.example");
        let (status, _) = send(&app, Method::POST, "/x", &[local, json, ops]).await;
        assert_eq!(status, 200);
        // Reads are not state changes: any Origin and Content-Type.
        let (status, _) = send(&app, Method::GET, "/x", &[local, evil, form]).await;
        assert_eq!(status, 200);
    }
}
