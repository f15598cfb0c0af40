//! SASL for mirrorgate's own connections to brokers (metadata refresh, later the
//! replicator): PLAIN and SCRAM-SHA-256/512 (RFC 5802/7677), over SaslHandshake v1 and
//! SaslAuthenticate. Clients' own SASL exchanges pass through the proxy untouched.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use rand::Rng;
use sha2::{Digest, Sha256, Sha512};

use super::client::{ClientError, KafkaConnection};
use crate::config::{SaslConfig, SaslMechanism};

const HANDSHAKE_VERSION: i16 = 1;
const AUTHENTICATE_VERSION: i16 = 2;

/// Authenticates a fresh connection.
pub async fn authenticate(
    conn: &mut KafkaConnection,
    sasl: &SaslConfig,
) -> Result<(), ClientError> {
    let mechanism = sasl.mechanism.name();
    let handshake =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
    let response = conn.call(&handshake, HANDSHAKE_VERSION).await?;
    if response.error_code != 0 {
        let offered: Vec<&str> = response.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(auth_error(format!(
            "broker refused mechanism {mechanism} (error {}; it offers {offered:?})",
            response.error_code
        )));
    }
    match sasl.mechanism {
        SaslMechanism::Plain => {
            let token = format!("\0{}\0{}", sasl.username, sasl.password);
            exchange(conn, token.into_bytes()).await.map(|_| ())
        }
        SaslMechanism::ScramSha256 => scram(conn, sasl, Hash::Sha256).await,
        SaslMechanism::ScramSha512 => scram(conn, sasl, Hash::Sha512).await,
    }
}

fn auth_error(message: String) -> ClientError {
    ClientError::Protocol(format!("SASL authentication: {message}"))
}

async fn exchange(conn: &mut KafkaConnection, token: Vec<u8>) -> Result<Bytes, ClientError> {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
    let response = conn.call(&request, AUTHENTICATE_VERSION).await?;
    if response.error_code != 0 {
        let message = response
            .error_message
            .as_ref()
            .map(|m| m.as_str().to_string());
        return Err(auth_error(
            message.unwrap_or_else(|| format!("error {}", response.error_code)),
        ));
    }
    Ok(response.auth_bytes)
}

/// Kafka's SCRAM names: '=' and ',' escaped as in RFC 5802.
fn sasl_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

#[derive(Clone, Copy)]
enum Hash {
    Sha256,
    Sha512,
}

impl Hash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Result<Vec<u8>, ClientError> {
        fn run<M: Mac + hmac::digest::KeyInit>(
            key: &[u8],
            data: &[u8],
        ) -> Result<Vec<u8>, ClientError> {
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .map_err(|e| auth_error(e.to_string()))?;
            mac.update(data);
            Ok(mac.finalize().into_bytes().to_vec())
        }
        match self {
            Hash::Sha256 => run::<Hmac<Sha256>>(key, data),
            Hash::Sha512 => run::<Hmac<Sha512>>(key, data),
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn salted_password(
        self,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Result<Vec<u8>, ClientError> {
        let mut out = vec![
            0u8;
            match self {
                Hash::Sha256 => 32,
                Hash::Sha512 => 64,
            }
        ];
        let result = match self {
            Hash::Sha256 => pbkdf2::pbkdf2::<Hmac<Sha256>>(password, salt, iterations, &mut out),
            Hash::Sha512 => pbkdf2::pbkdf2::<Hmac<Sha512>>(password, salt, iterations, &mut out),
        };
        result.map_err(|e| auth_error(e.to_string()))?;
        Ok(out)
    }
}

async fn scram(
    conn: &mut KafkaConnection,
    sasl: &SaslConfig,
    hash: Hash,
) -> Result<(), ClientError> {
    let nonce: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let client_first_bare = format!("n={},r={nonce}", sasl_name(&sasl.username));
    let server_first = exchange(conn, format!("n,,{client_first_bare}").into_bytes()).await?;
    let server_first = String::from_utf8(server_first.to_vec())
        .map_err(|_| auth_error("server-first-message is not UTF-8".into()))?;
    let (client_final, expected) = client_final(
        hash,
        &sasl.password,
        &nonce,
        &client_first_bare,
        &server_first,
    )?;
    let server_final = exchange(conn, client_final.into_bytes()).await?;
    match String::from_utf8_lossy(&server_final).strip_prefix("v=") {
        Some(verifier) if verifier == expected => Ok(()),
        _ => Err(auth_error(
            "the broker's server signature does not verify".into(),
        )),
    }
}

/// The client-final-message for a server-first-message, and the server signature the
/// broker must answer with (RFC 5802 section 3).
fn client_final(
    hash: Hash,
    password: &str,
    nonce: &str,
    client_first_bare: &str,
    server_first: &str,
) -> Result<(String, String), ClientError> {
    let field = |key: &str| {
        server_first
            .split(',')
            .find_map(|part| part.strip_prefix(key))
            .ok_or_else(|| auth_error(format!("server-first-message lacks {key}")))
    };
    let combined_nonce = field("r=")?;
    if !combined_nonce.starts_with(nonce) {
        return Err(auth_error("server nonce does not extend ours".into()));
    }
    let salt = B64
        .decode(field("s=")?)
        .map_err(|_| auth_error("salt is not base64".into()))?;
    let iterations: u32 = field("i=")?
        .parse()
        .map_err(|_| auth_error("iteration count is not a number".into()))?;
    if !(1..=100_000_000).contains(&iterations) {
        return Err(auth_error(format!(
            "implausible iteration count {iterations}"
        )));
    }
    let salted = hash.salted_password(password.as_bytes(), &salt, iterations)?;
    let client_key = hash.hmac(&salted, b"Client Key")?;
    let stored_key = hash.digest(&client_key);
    let without_proof = format!("c=biws,r={combined_nonce}");
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = hash.hmac(&stored_key, auth_message.as_bytes())?;
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(k, s)| k ^ s)
        .collect();
    let server_key = hash.hmac(&salted, b"Server Key")?;
    let expected = B64.encode(hash.hmac(&server_key, auth_message.as_bytes())?);
    Ok((format!("{without_proof},p={}", B64.encode(proof)), expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SCRAM-SHA-256 example exchange of RFC 7677 section 3.
    #[test]
    fn rfc7677_example() {
        let nonce = "rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let (client_final, verifier) = client_final(
            Hash::Sha256,
            "pencil",
            nonce,
            "n=user,r=rOprNGfwEbeRWgbNEkqO",
            server_first,
        )
        .unwrap();
        assert_eq!(
            client_final,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(verifier, "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn a_server_nonce_that_does_not_extend_ours_is_refused() {
        let server_first = "r=somebody-else,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        assert!(client_final(Hash::Sha512, "pw", "mine", "n=u,r=mine", server_first).is_err());
    }

    #[test]
    fn names_are_escaped() {
        assert_eq!(sasl_name("a=b,c"), "a=3Db=2Cc");
    }
}
