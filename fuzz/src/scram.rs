//! Target `scram`: mirrorgate's SASL client (`kafka::sasl::Conversation`, run by
//! `KafkaConnection::connect_with`) against a scripted broker on loopback that answers
//! SaslHandshake, then SaslAuthenticate with fuzzed server-first and server-final
//! messages. Input: a flags byte (mechanism, error answers), then the server-first
//! message, a 0x00 byte, the server-final message. `{nonce}` in the server-first
//! message becomes the client's nonce, so the exchange gets past the nonce check.
//!
//! Properties: nothing panics and the client never hangs; PLAIN succeeds exactly when
//! the broker accepts; SCRAM never succeeds against a server-final message that is
//! not `v=` + base64 (no server signature, no authentication), nor when the broker
//! answered with an error.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use mirrorgate::config::{SaslConfig, SaslMechanism};
use mirrorgate::kafka::client::KafkaConnection;
use mirrorgate::kafka::codec::{decode_request, encode_response};
use mirrorgate::kafka::frame::{FrameReader, RequestFrame};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// Iteration counts above this are skipped: PBKDF2 cost grows with them by design
/// (the client bounds them at 100M), and it would only slow the fuzzer down.
const MAX_ITERATIONS: u32 = 256;
/// Listeners taken in turn, so loopback connections in TIME_WAIT (one per input) are
/// spread over many 4-tuples instead of exhausting the ephemeral ports of one.
const LISTENERS: usize = 32;

struct Harness {
    runtime: Runtime,
    listeners: Vec<(TcpListener, String)>,
    next: std::sync::atomic::AtomicUsize,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listeners = runtime.block_on(async {
            let mut out = Vec::new();
            for _ in 0..LISTENERS {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap().to_string();
                out.push((listener, addr));
            }
            out
        });
        Harness {
            runtime,
            listeners,
            next: Default::default(),
        }
    })
}

/// What the scripted broker answers.
struct Script {
    handshake_error: i16,
    authenticate_error: i16,
    server_first: Vec<u8>,
    server_final: Bytes,
    /// SaslAuthenticate round trips of the mechanism: the broker stops after them.
    exchanges: usize,
}

pub fn check(data: &[u8]) {
    let Some((flags, rest)) = data.split_first() else {
        return;
    };
    let mechanism = match flags & 3 {
        0 => SaslMechanism::Plain,
        1 => SaslMechanism::ScramSha256,
        _ => SaslMechanism::ScramSha512,
    };
    let (server_first, server_final) = match rest.iter().position(|b| *b == 0) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    if too_many_iterations(server_first) {
        return;
    }
    let script = Script {
        handshake_error: if flags & 4 != 0 { 33 } else { 0 },
        authenticate_error: if flags & 8 != 0 { 58 } else { 0 },
        server_first: server_first.to_vec(),
        server_final: Bytes::copy_from_slice(server_final),
        exchanges: if mechanism == SaslMechanism::Plain {
            1
        } else {
            2
        },
    };
    let sasl = SaslConfig {
        mechanism,
        username: "fuzz,user=".into(),
        password: "pencil".into(),
    };
    let h = harness();
    let index = h.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % LISTENERS;
    let (listener, addr) = &h.listeners[index];
    let result = h.runtime.block_on(async {
        let broker = async {
            let (stream, _) = listener.accept().await.unwrap();
            serve(stream, &script).await;
        };
        let client =
            KafkaConnection::connect_with(addr, "fuzz", Duration::from_secs(5), None, Some(&sasl));
        let (result, ()) = tokio::join!(client, broker);
        result.map(|_| ())
    });
    let refused = script.handshake_error != 0 || script.authenticate_error != 0;
    match mechanism {
        SaslMechanism::Plain => assert_eq!(result.is_ok(), !refused, "{result:?}"),
        _ => {
            if result.is_ok() {
                assert!(!refused, "authenticated although the broker refused");
                assert!(
                    script.server_final.starts_with(b"v="),
                    "authenticated without a server signature"
                );
            }
        }
    }
}

/// The iteration count as the client reads it (first `i=` attribute).
fn too_many_iterations(server_first: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(server_first) else {
        return false;
    };
    text.split(',')
        .find_map(|part| part.strip_prefix("i="))
        .and_then(|i| i.parse::<u32>().ok())
        .is_some_and(|i| i > MAX_ITERATIONS)
}

/// Answers requests until the script is done or the client hangs up, then closes.
async fn serve(stream: TcpStream, script: &Script) {
    let (read, mut write) = stream.into_split();
    let mut frames = FrameReader::new(read, 1 << 20, 8);
    let mut authenticates = 0;
    while let Ok(Some(frame)) = frames.next().await {
        let Ok(request) = RequestFrame::parse(frame) else {
            return;
        };
        let (corr, version) = (request.correlation_id, request.api_version);
        let answer = match request.api_key {
            ApiKey::SaslHandshake => {
                let response = SaslHandshakeResponse::default()
                    .with_error_code(script.handshake_error)
                    .with_mechanisms(vec![StrBytes::from_static_str("SCRAM-SHA-256")]);
                encode_response(corr, ApiKey::SaslHandshake, version, &response)
            }
            ApiKey::SaslAuthenticate => {
                let Ok(auth) = decode_request::<SaslAuthenticateRequest>(&request) else {
                    return;
                };
                authenticates += 1;
                let bytes = if authenticates == 1 {
                    server_first(&script.server_first, &auth.auth_bytes)
                } else {
                    script.server_final.clone()
                };
                let mut response = SaslAuthenticateResponse::default()
                    .with_error_code(script.authenticate_error)
                    .with_auth_bytes(bytes);
                if script.authenticate_error != 0 {
                    response.error_message = Some(StrBytes::from_static_str("refused"));
                }
                encode_response(corr, ApiKey::SaslAuthenticate, version, &response)
            }
            _ => return,
        };
        if write.write_all(&answer.unwrap()).await.is_err() {
            return;
        }
        if authenticates >= script.exchanges {
            return;
        }
    }
}

/// The scripted server-first message with `{nonce}` replaced by the client's nonce.
fn server_first(template: &[u8], client_first: &[u8]) -> Bytes {
    let client_first = String::from_utf8_lossy(client_first);
    let nonce = client_first
        .split(',')
        .find_map(|part| part.strip_prefix("r="))
        .unwrap_or_default();
    let mut out = Vec::with_capacity(template.len() + nonce.len());
    let mut rest = template;
    while let Some(at) = rest.windows(7).position(|w| w == b"{nonce}") {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(nonce.as_bytes());
        rest = &rest[at + 7..];
    }
    out.extend_from_slice(rest);
    Bytes::from(out)
}
