//! The admin API against what a web page in an operator's browser can send: the bearer
//! token, the Host check (DNS rebinding), cross-origin and non-JSON state changes,
//! body-less mirror actions, the loopback rule, and stored credentials never offered
//! to a server an alter names. Real binary, real brokers.

use crate::common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::replication::{
    cli, link_and_mirror, one_partition_topic, replicating, scram_link, sealing_proxy, source,
    text, ALICE_JAAS,
};
use common::{
    destination, eventually, free_ports, test_port_base, unique, Cluster, Proxy, ProxyOptions,
};

/// One HTTP/1.1 request with exactly these headers (no Host unless given):
/// (status, headers, body).
fn raw(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the admin listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"));
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// A request as the CLI sends it: our own Host, JSON, and the token when given.
fn api(proxy: &Proxy, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![
        ("Host", proxy.admin.as_str()),
        ("Content-Type", "application/json"),
    ];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    let (status, _, body) = raw(&proxy.admin, method, path, &headers, body);
    (status, body)
}

fn token_proxy(token_file: &Path, tables: String) -> Proxy {
    Proxy::start(
        destination(),
        ProxyOptions {
            extra_admin_toml: format!("token_file = \"{}\"\n", token_file.display()),
            extra_tables: tables,
            ..Default::default()
        },
    )
}

fn cli_with(
    proxy: &Proxy,
    env_token: Option<&str>,
    token_file: Option<&Path>,
    args: &[&str],
) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mirrorgate"));
    command
        .args(args)
        .args(["--admin-url", &format!("http://{}", proxy.admin)])
        .env_remove("MIRRORGATE_ADMIN_TOKEN");
    if let Some(token) = env_token {
        command.env("MIRRORGATE_ADMIN_TOKEN", token);
    }
    if let Some(file) = token_file {
        command.arg("--admin-token-file").arg(file);
    }
    // Right after start the replicator may still be loading its state.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = command.output().expect("run the CLI");
        if !text(&out).contains("not loaded yet") || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn the_token_guards_every_route_but_the_probes_and_is_reread_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, "first-token\n").unwrap();
    let proxy = token_proxy(
        &token_file,
        replicating(&unique("_mirrorgate-metadata-auth")).extra_tables,
    );

    let local = ("Host", proxy.admin.as_str());
    let (status, head, body) = raw(&proxy.admin, "GET", "/admin/config", &[local], "");
    assert_eq!(status, 401, "{body}");
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    assert!(body.contains("\"error_code\":401"), "{body}");
    assert_eq!(
        api(&proxy, "GET", "/admin/config", Some("wrong"), "").0,
        401
    );
    let (status, body) = api(&proxy, "GET", "/admin/config", Some("first-token"), "");
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("first-token"),
        "the token is not shown: {body}"
    );
    assert_eq!(api(&proxy, "GET", "/metrics", None, "").0, 401);
    assert_eq!(api(&proxy, "POST", "/admin/reload", None, "{}").0, 401);
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(
            raw(&proxy.admin, "GET", probe, &[local], "").0,
            200,
            "{probe}"
        );
    }

    // The CLI: no token is refused, the environment or the flag's file is sent.
    let list = ["cluster-links", "--list"];
    let out = cli_with(&proxy, None, None, &list);
    assert!(
        !out.status.success() && text(&out).contains("Bearer"),
        "{}",
        text(&out)
    );
    let out = cli_with(&proxy, Some("first-token"), None, &list);
    assert!(out.status.success(), "{}", text(&out));
    let out = cli_with(&proxy, Some("wrong"), Some(&token_file), &list);
    assert!(out.status.success(), "{}", text(&out));

    // A rotated token applies at the reload; the old one stops working.
    std::fs::write(&token_file, "second-token").unwrap();
    let (status, body) = api(&proxy, "POST", "/admin/reload", Some("first-token"), "{}");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        api(&proxy, "GET", "/admin/config", Some("first-token"), "").0,
        401
    );
    assert_eq!(
        api(&proxy, "GET", "/admin/config", Some("second-token"), "").0,
        200
    );
    // An empty token file is refused, naming the key; the running token stays.
    std::fs::write(&token_file, "\n").unwrap();
    let (status, body) = api(&proxy, "POST", "/admin/reload", Some("second-token"), "{}");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("admin.token_file"), "{body}");
    assert_eq!(
        api(&proxy, "GET", "/admin/config", Some("second-token"), "").0,
        200
    );
}

#[test]
fn a_foreign_host_is_refused_even_with_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, "t0ken").unwrap();
    let proxy = token_proxy(&token_file, String::new());
    let auth = ("Authorization", "Bearer t0ken");
    let (status, _, body) = raw(
        &proxy.admin,
        "GET",
        "/admin/config",
        &[("Host", "rebound.evil.example:80"), auth],
        "",
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("\"error_code\":403"), "{body}");
    let port = proxy.admin.rsplit(':').next().unwrap().to_string();
    for host in [
        format!("localhost:{port}"),
        "localhost".to_string(),
        format!("[::1]:{port}"),
        proxy.admin.clone(),
    ] {
        let (status, _, body) = raw(
            &proxy.admin,
            "GET",
            "/admin/config",
            &[("Host", &host), auth],
            "",
        );
        assert_eq!(status, 200, "{host}: {body}");
    }
    let (status, _, _) = raw(&proxy.admin, "GET", "/admin/config", &[auth], "");
    assert!(status == 403 || status == 400, "no Host: {status}");
}

fn mirror_state(proxy: &Proxy, topic: &str) -> String {
    let described = text(&cli(proxy, &["mirrors", "--describe", "--topics", topic]));
    described
        .split("State: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_web_page_cannot_fail_over_a_mirror_and_an_empty_action_changes_nothing() {
    let src = source();
    let proxy = Proxy::start(
        destination(),
        replicating(&unique("_mirrorgate-metadata-csrf")),
    );
    let topic = one_partition_topic(&src, "csrf", "a\nb\n");
    let link = link_and_mirror(&proxy, &src, &topic);
    eventually("the mirror is ACTIVE", Duration::from_secs(60), || {
        (mirror_state(&proxy, &topic) == "ACTIVE").then_some(())
    });
    let path = format!("/kafka/v3/clusters/x/links/{link}/mirrors:failover");
    let local = ("Host", proxy.admin.as_str());
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let names = format!("{{\"mirror_topic_names\":[\"{topic}\"]}}");

    // A cross-origin form POST (what a page may send without a preflight).
    let evil = ("Origin", "http://evil.example");
    let (status, _, body) = raw(
        &proxy.admin,
        "POST",
        &path,
        &[local, form, evil],
        "mirror_topic_names=x",
    );
    assert_eq!(status, 403, "{body}");
    // A no-cors fetch: text/plain body, or a JSON body labelled as a form.
    let (status, _, _) = raw(
        &proxy.admin,
        "POST",
        &path,
        &[local, ("Content-Type", "text/plain")],
        &names,
    );
    assert_eq!(status, 415);
    let (status, _, _) = raw(&proxy.admin, "POST", &path, &[local, form], &names);
    assert_eq!(status, 415);
    // JSON from a foreign origin is refused too.
    let json = ("Content-Type", "application/json");
    let (status, _, _) = raw(&proxy.admin, "POST", &path, &[local, json, evil], &names);
    assert_eq!(status, 403);
    // No body, or no topics: never "every mirror of the link".
    for body in ["", "{}", "{\"mirror_topic_names\":[]}"] {
        let (status, _, answer) = raw(&proxy.admin, "POST", &path, &[local, json], body);
        assert_eq!(status, 400, "{body:?}: {answer}");
        assert!(answer.contains("mirror_topic_names"), "{answer}");
    }
    assert_eq!(mirror_state(&proxy, &topic), "ACTIVE");

    // The CLI's --link names the link's mirrors itself, and still works.
    let out = cli(&proxy, &["mirrors", "--failover", "--link", &link]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&topic), "{}", text(&out));
    let state = mirror_state(&proxy, &topic);
    assert!(state == "STOPPED" || state == "PENDING_STOPPED", "{state}");
}

#[test]
fn a_non_loopback_bind_without_a_token_is_refused_at_start_and_at_reload() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mirrorgate.toml");
    let [proxy_port, broker_port_base, admin_port] = free_ports();
    let exposed = format!(
        "[proxy]\nbind = \"127.0.0.1:{proxy_port}\"\nadvertised_host = \"127.0.0.1\"\nbroker_port_base = {broker_port_base}\n\n\
         [destination]\nbootstrap_servers = \"{}\"\n\n[admin]\nbind = \"0.0.0.0:{admin_port}\"\n",
        destination().bootstrap,
    );
    std::fs::write(&config, &exposed).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mirrorgate"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mirrorgate kept running with an exposed admin API");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("admin.bind") && stderr.contains("token_file"),
        "{stderr}"
    );

    // A running loopback instance refuses a reload to the same exposure.
    let options = ProxyOptions::default();
    let proxy = Proxy::start(destination(), options);
    let text = std::fs::read_to_string(proxy.config_path()).unwrap();
    proxy.write_raw_config(&text.replace(
        &format!("bind = \"{}\"", proxy.admin),
        "bind = \"0.0.0.0:1\"",
    ));
    let (status, body) = proxy.reload();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("admin.bind"), "{body}");
}

/// A TCP listener that counts the connections it accepts (and closes them).
fn counting_listener() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stream.is_ok() {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (addr, accepted)
}

#[test]
fn stored_credentials_never_reach_a_new_server_unless_given_again() {
    let dir = tempfile::tempdir().unwrap();
    let sasl = Cluster::up_with(
        "mg-sasl",
        1,
        test_port_base() + 520,
        &["--security", "sasl_plaintext"],
    );
    let proxy = sealing_proxy(dir.path());
    let link = scram_link(&proxy, &sasl, dir.path());

    let (trap, accepted) = counting_listener();
    let path = format!("/kafka/v3/clusters/x/links/{link}/configs:alter?validate_only=true");
    let only_servers =
        format!("{{\"data\":[{{\"name\":\"bootstrap.servers\",\"value\":\"{trap}\"}}]}}");
    let (status, body) = api(&proxy, "PUT", &path, None, &only_servers);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("sasl.jaas.config"), "{body}");
    // Not validate_only either.
    let real_path = format!("/kafka/v3/clusters/x/links/{link}/configs:alter");
    assert_eq!(api(&proxy, "PUT", &real_path, None, &only_servers).0, 400);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "mirrorgate connected to the new server"
    );

    // With the credentials in the request, the new server is tried (and does not answer).
    let resupplied = serde_json::json!({ "data": [
        { "name": "bootstrap.servers", "value": trap },
        { "name": "sasl.jaas.config", "value": ALICE_JAAS },
    ]})
    .to_string();
    let (status, body) = api(&proxy, "PUT", &path, None, &resupplied);
    assert_ne!(status, 204, "the trap is no Kafka cluster: {body}");
    assert!(!body.contains("resupply"), "{body}");
    eventually("the new server is tried", Duration::from_secs(10), || {
        (accepted.load(Ordering::SeqCst) > 0)
            .then_some(())
            .ok_or_else(|| format!("not yet; the API answered: {body}"))
    });
}
