//! What the record layer of a client's TLS connection costs mirrorgate per GB, for each
//! of rustls's two crypto providers (ring, which mirrorgate uses, and aws-lc-rs) and
//! each TLS 1.3 cipher suite. No sockets: a rustls client (the Kafka client) and server
//! (mirrorgate's edge) talk through memory, in full 16 KiB records, as under load.
//!
//! - produce: the client encrypts, the server reads the records in the steps rustls
//!   reads a socket in, decrypts them and hands out the plaintext;
//! - consume: the server encrypts and writes its records out.
//!
//! Only the server's side is timed: that is mirrorgate's cost. One thread, so wall time
//! is CPU time. Rounds interleave the providers; figures are medians.
//!
//!   cargo run --release --manifest-path benches/tls_providers/Cargo.toml [-- --quick]

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::{aws_lc_rs, ring, CryptoProvider};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{
    CipherSuite, ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection,
};

const MIB: usize = 1 << 20;
/// Plaintext handed over per step: what one large Produce or Fetch carries.
const STEP: usize = MIB;

/// TLS 1.3 suites in the order Java 17's client offers them.
const SUITES: [CipherSuite; 3] = [
    CipherSuite::TLS13_AES_256_GCM_SHA384,
    CipherSuite::TLS13_AES_128_GCM_SHA256,
    CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
];
const PROVIDERS: [&str; 2] = ["ring", "aws-lc-rs"];

fn provider(name: &str, suite: CipherSuite) -> Arc<CryptoProvider> {
    let base = match name {
        "ring" => ring::default_provider(),
        _ => aws_lc_rs::default_provider(),
    };
    let cipher_suites = base
        .cipher_suites
        .iter()
        .copied()
        .filter(|s| s.suite() == suite)
        .collect();
    Arc::new(CryptoProvider {
        cipher_suites,
        ..base
    })
}

struct Pair {
    client: ClientConnection,
    server: ServerConnection,
}

fn connect(provider_name: &str, suite: CipherSuite) -> Pair {
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("a self-signed certificate");
    let cert = issued.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(issued.signing_key.serialize_der()));
    let crypto = provider(provider_name, suite);
    let server = ServerConfig::builder_with_provider(crypto.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .expect("the server's certificate");
    let mut roots = RootCertStore::empty();
    roots.add(cert).expect("the root");
    let client = ClientConfig::builder_with_provider(crypto)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("a name");
    let mut pair = Pair {
        client: ClientConnection::new(Arc::new(client), name).expect("a client"),
        server: ServerConnection::new(Arc::new(server)).expect("a server"),
    };
    let mut wire = Vec::new();
    while pair.client.is_handshaking() || pair.server.is_handshaking() {
        wire.clear();
        pair.client.write_tls(&mut wire).expect("client writes");
        feed_server(&mut pair.server, &wire);
        wire.clear();
        pair.server.write_tls(&mut wire).expect("server writes");
        let mut rest = &wire[..];
        while !rest.is_empty() {
            pair.client.read_tls(&mut rest).expect("client reads");
            pair.client.process_new_packets().expect("client handshake");
        }
    }
    // The client encrypts a whole step at once (its side is not timed).
    pair.client.set_buffer_limit(None);
    let negotiated = pair.server.negotiated_cipher_suite().map(|s| s.suite());
    assert_eq!(negotiated, Some(suite), "the suite asked for");
    pair
}

/// The server reads `wire` as it reads a socket: `read_tls` takes what its buffer has
/// room for, then the records are processed.
fn feed_server(server: &mut ServerConnection, wire: &[u8]) {
    let mut rest = wire;
    while !rest.is_empty() {
        server.read_tls(&mut rest).expect("server reads");
        server.process_new_packets().expect("server processes");
    }
}

/// Server time to take `total` bytes of a producer's records and hand out the plaintext.
fn produce(pair: &mut Pair, total: usize) -> Duration {
    let payload = vec![0x5a_u8; STEP];
    let mut wire = Vec::with_capacity(STEP + STEP / 8);
    let mut plain = vec![0u8; 64 * 1024];
    let mut spent = Duration::ZERO;
    for _ in 0..total / STEP {
        wire.clear();
        pair.client
            .writer()
            .write_all(&payload)
            .expect("client writes");
        while pair.client.wants_write() {
            pair.client.write_tls(&mut wire).expect("client encrypts");
        }
        let start = Instant::now();
        let mut rest = &wire[..];
        let mut got = 0;
        while !rest.is_empty() || got < STEP {
            if !rest.is_empty() {
                pair.server.read_tls(&mut rest).expect("server reads");
                pair.server.process_new_packets().expect("server decrypts");
            }
            match pair.server.reader().read(&mut plain) {
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("server reads plaintext: {e}"),
            }
        }
        spent += start.elapsed();
        assert_eq!(got, STEP);
    }
    spent
}

/// Server time to encrypt `total` bytes of answers and write its records out.
fn consume(pair: &mut Pair, total: usize) -> Duration {
    let payload = vec![0xa5_u8; STEP];
    let mut wire = Vec::with_capacity(STEP + STEP / 8);
    let mut spent = Duration::ZERO;
    for _ in 0..total / STEP {
        wire.clear();
        let start = Instant::now();
        let mut left = &payload[..];
        while !left.is_empty() {
            let n = pair.server.writer().write(left).expect("server writes");
            left = &left[n..];
            while pair.server.wants_write() {
                pair.server.write_tls(&mut wire).expect("server encrypts");
            }
        }
        spent += start.elapsed();
        std::hint::black_box(&wire);
    }
    spent
}

fn cpu_s_per_gb(spent: Duration, bytes: usize) -> f64 {
    spent.as_secs_f64() * 1e9 / bytes as f64
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, total) = if quick { (3, 64 * MIB) } else { (5, 512 * MIB) };
    println!(
        "{rounds} rounds of {} MiB each way; CPU-s per GB (10^9 bytes of plaintext), medians",
        total / MIB
    );
    println!();
    println!("| suite | provider | produce (decrypt) | consume (encrypt) | vs ring |");
    println!("|---|---|---:|---:|---:|");
    for suite in SUITES {
        let mut results: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); 2];
        for round in 0..rounds {
            for k in 0..PROVIDERS.len() {
                let i = (k + round) % PROVIDERS.len();
                let mut pair = connect(PROVIDERS[i], suite);
                let p = produce(&mut pair, total);
                let c = consume(&mut pair, total);
                results[i].0.push(cpu_s_per_gb(p, total));
                results[i].1.push(cpu_s_per_gb(c, total));
            }
        }
        let medians: Vec<(f64, f64)> = results
            .into_iter()
            .map(|(p, c)| (median(p), median(c)))
            .collect();
        let ring_sum = medians[0].0 + medians[0].1;
        for (name, (p, c)) in PROVIDERS.iter().zip(&medians) {
            println!(
                "| {suite:?} | {name} | {p:.3} | {c:.3} | {:.2}x |",
                (p + c) / ring_sum
            );
        }
    }
}
