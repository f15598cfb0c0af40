//! SASL for mirrorgate's own connections to brokers (metadata refresh, the
//! replicator): PLAIN and SCRAM-SHA-256/512 (RFC 5802/7677) as a [`Conversation`]
//! without I/O: the tokens to send and the checks of the broker's answers. The
//! connection (`client.rs`) carries them in SaslHandshake v1 and SaslAuthenticate.
//! Clients' own SASL exchanges pass through the proxy untouched.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

/// Credentials of mirrorgate's own connections (the `[destination.sasl]` config
/// table, and a link's `sasl.*` keys).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    pub mechanism: SaslMechanism,
    pub username: String,
    #[serde(serialize_with = "redacted")]
    pub password: String,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// Secrets never leave the process: GET /admin/config shows them as "***".
fn redacted<S: serde::Serializer>(_: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str("***")
}

/// One SASL exchange, step by step: [`Conversation::first_token`], then each of the
/// broker's answers to [`Conversation::answer`] until it returns `None`. SCRAM's key
/// derivation is seconds of CPU at high iteration counts, so the caller runs `answer`
/// off the async workers.
pub struct Conversation {
    config: SaslConfig,
    step: Step,
}

enum Step {
    Start,
    PlainSent,
    ScramFirstSent {
        hash: Hash,
        nonce: String,
        client_first_bare: String,
    },
    ScramFinalSent {
        expected: String,
    },
    Done,
}

impl Conversation {
    pub fn new(config: SaslConfig) -> Self {
        Self {
            config,
            step: Step::Start,
        }
    }

    /// The mechanism to name in SaslHandshake.
    pub fn mechanism(&self) -> &'static str {
        self.config.mechanism.name()
    }

    /// The first SaslAuthenticate token.
    pub fn first_token(&mut self) -> Vec<u8> {
        let hash = match self.config.mechanism {
            SaslMechanism::Plain => {
                self.step = Step::PlainSent;
                let (user, password) = (&self.config.username, &self.config.password);
                return format!("\0{user}\0{password}").into_bytes();
            }
            SaslMechanism::ScramSha256 => Hash::Sha256,
            SaslMechanism::ScramSha512 => Hash::Sha512,
        };
        let nonce: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        let client_first_bare = format!("n={},r={nonce}", sasl_name(&self.config.username));
        let token = format!("n,,{client_first_bare}").into_bytes();
        self.step = Step::ScramFirstSent {
            hash,
            nonce,
            client_first_bare,
        };
        token
    }

    /// The broker's answer to the last token: the next token to send, or `None` when
    /// the exchange is complete.
    pub fn answer(&mut self, server: &[u8]) -> Result<Option<Vec<u8>>, ScramError> {
        match std::mem::replace(&mut self.step, Step::Done) {
            Step::PlainSent => Ok(None),
            Step::ScramFirstSent {
                hash,
                nonce,
                client_first_bare,
            } => {
                let first = ServerFirst::parse(server, &nonce)?;
                let salted = hash.salted_password(
                    self.config.password.as_bytes(),
                    &first.salt,
                    first.iterations,
                )?;
                let (client_final, expected) =
                    client_final(hash, &salted, &client_first_bare, &first)?;
                self.step = Step::ScramFinalSent { expected };
                Ok(Some(client_final.into_bytes()))
            }
            Step::ScramFinalSent { expected } => {
                verify_server_final(server, &expected)?;
                Ok(None)
            }
            Step::Start | Step::Done => Err(ScramError::OutOfTurn),
        }
    }
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
    fn hmac(self, key: &[u8], data: &[u8]) -> Result<Vec<u8>, ScramError> {
        fn run<M: Mac + hmac::digest::KeyInit>(
            key: &[u8],
            data: &[u8],
        ) -> Result<Vec<u8>, ScramError> {
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .map_err(|e| ScramError::Derivation(e.to_string()))?;
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
    ) -> Result<Vec<u8>, ScramError> {
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
        result.map_err(|e| ScramError::Derivation(e.to_string()))?;
        Ok(out)
    }
}

/// Kafka's ScramMechanism refuses credentials below 4096 iterations (also RFC 7677's
/// minimum), so a broker never asks for fewer.
const MIN_ITERATIONS: u32 = 4096;
/// Kafka stores at most 16384 iterations; a count far beyond is hostile or misconfigured
/// and costs seconds of CPU per connection, so it is refused before any hashing.
const MAX_ITERATIONS: u32 = 1_000_000;
/// A server-first or server-final message is a few hundred bytes; anything longer is
/// refused before it is parsed.
const MAX_SERVER_MESSAGE: usize = 4096;
/// Longest combined nonce (ours, 32 characters, plus the broker's part).
const MAX_NONCE: usize = 1024;
/// Longest salt, decoded (Kafka's are 32 bytes or so).
const MAX_SALT: usize = 1024;
/// Base64 characters of a [`MAX_SALT`]-byte salt, checked before decoding.
const MAX_SALT_BASE64: usize = MAX_SALT.div_ceil(3) * 4;
/// How much of a broker's `e=` error is quoted.
const MAX_QUOTED_ERROR: usize = 200;

/// Why a SCRAM exchange failed on what the broker sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("the {0} is longer than {MAX_SERVER_MESSAGE} bytes")]
    MessageTooLong(&'static str),
    #[error("the {0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("the server-first-message lacks {0}")]
    Missing(&'static str),
    #[error("the server-first-message carries a mandatory extension (m=)")]
    MandatoryExtension,
    #[error("the server nonce does not extend ours")]
    NonceMismatch,
    #[error("the server nonce is longer than {MAX_NONCE} bytes or not printable")]
    BadNonce,
    #[error("the salt is not base64 of 1..={MAX_SALT} bytes")]
    BadSalt,
    #[error("the iteration count is not a number")]
    BadIterations,
    #[error(
        "the broker asks for {count} PBKDF2 iterations, outside {MIN_ITERATIONS}..={MAX_ITERATIONS}"
    )]
    IterationCount { count: u64 },
    #[error("the broker reported a SCRAM error: {0}")]
    ServerError(String),
    #[error("the broker's server signature does not verify")]
    BadSignature,
    #[error("key derivation: {0}")]
    Derivation(String),
    #[error("the exchange has no step waiting for an answer")]
    OutOfTurn,
}

/// The fields of a server-first-message (RFC 5802 section 7), checked and bounded.
#[derive(Debug)]
struct ServerFirst {
    message: String,
    combined_nonce: String,
    salt: Vec<u8>,
    iterations: u32,
}

impl ServerFirst {
    fn parse(raw: &[u8], nonce: &str) -> Result<Self, ScramError> {
        const WHAT: &str = "server-first-message";
        if raw.len() > MAX_SERVER_MESSAGE {
            return Err(ScramError::MessageTooLong(WHAT));
        }
        let message = std::str::from_utf8(raw).map_err(|_| ScramError::NotUtf8(WHAT))?;
        if message.starts_with("m=") {
            return Err(ScramError::MandatoryExtension);
        }
        let field = |key: &'static str| {
            message
                .split(',')
                .find_map(|part| part.strip_prefix(key))
                .ok_or(ScramError::Missing(key))
        };
        let combined_nonce = field("r=")?;
        if combined_nonce.len() > MAX_NONCE
            || !combined_nonce.bytes().all(|b| (0x21..=0x7e).contains(&b))
        {
            return Err(ScramError::BadNonce);
        }
        if combined_nonce.len() <= nonce.len() || !combined_nonce.starts_with(nonce) {
            return Err(ScramError::NonceMismatch);
        }
        let salt = field("s=")?;
        if salt.len() > MAX_SALT_BASE64 {
            return Err(ScramError::BadSalt);
        }
        let salt = B64.decode(salt).map_err(|_| ScramError::BadSalt)?;
        if salt.is_empty() || salt.len() > MAX_SALT {
            return Err(ScramError::BadSalt);
        }
        let iterations = field("i=")?;
        if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ScramError::BadIterations);
        }
        // More digits than a u64 holds is over the cap all the same.
        let count: u64 = iterations.parse().unwrap_or(u64::MAX);
        let iterations = u32::try_from(count)
            .ok()
            .filter(|i| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(i))
            .ok_or(ScramError::IterationCount { count })?;
        Ok(Self {
            message: message.to_string(),
            combined_nonce: combined_nonce.to_string(),
            salt,
            iterations,
        })
    }
}

/// The client-final-message from the salted password, and the server signature the
/// broker must answer with (RFC 5802 section 3).
fn client_final(
    hash: Hash,
    salted: &[u8],
    client_first_bare: &str,
    first: &ServerFirst,
) -> Result<(String, String), ScramError> {
    let client_key = hash.hmac(salted, b"Client Key")?;
    let stored_key = hash.digest(&client_key);
    let without_proof = format!("c=biws,r={}", first.combined_nonce);
    let auth_message = format!("{client_first_bare},{},{without_proof}", first.message);
    let signature = hash.hmac(&stored_key, auth_message.as_bytes())?;
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(k, s)| k ^ s)
        .collect();
    let server_key = hash.hmac(salted, b"Server Key")?;
    let expected = B64.encode(hash.hmac(&server_key, auth_message.as_bytes())?);
    Ok((format!("{without_proof},p={}", B64.encode(proof)), expected))
}

/// Checks a server-final-message: `v=` with the expected signature, else the broker's
/// `e=` error (quoted, shortened) or a verification failure.
fn verify_server_final(raw: &[u8], expected: &str) -> Result<(), ScramError> {
    const WHAT: &str = "server-final-message";
    if raw.len() > MAX_SERVER_MESSAGE {
        return Err(ScramError::MessageTooLong(WHAT));
    }
    let message = std::str::from_utf8(raw).map_err(|_| ScramError::NotUtf8(WHAT))?;
    if let Some(error) = message.strip_prefix("e=") {
        return Err(ScramError::ServerError(
            error.chars().take(MAX_QUOTED_ERROR).collect(),
        ));
    }
    match message.split(',').find_map(|part| part.strip_prefix("v=")) {
        Some(verifier) if verifier == expected => Ok(()),
        _ => Err(ScramError::BadSignature),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const RFC_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";

    fn parse(server_first: &str) -> Result<ServerFirst, ScramError> {
        ServerFirst::parse(server_first.as_bytes(), RFC_NONCE)
    }

    fn with_iterations(i: &str) -> String {
        RFC_FIRST.replace("i=4096", &format!("i={i}"))
    }

    /// The SCRAM-SHA-256 example exchange of RFC 7677 section 3.
    #[test]
    fn rfc7677_example() {
        let first = parse(RFC_FIRST).unwrap();
        let salted = Hash::Sha256
            .salted_password(b"pencil", &first.salt, first.iterations)
            .unwrap();
        let (client_final, verifier) = client_final(
            Hash::Sha256,
            &salted,
            "n=user,r=rOprNGfwEbeRWgbNEkqO",
            &first,
        )
        .unwrap();
        assert_eq!(
            client_final,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(verifier, "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        let server_final = format!("v={verifier}");
        assert_eq!(
            verify_server_final(server_final.as_bytes(), &verifier),
            Ok(())
        );
        assert_eq!(
            verify_server_final(b"v=AAAA", &verifier),
            Err(ScramError::BadSignature)
        );
    }

    #[test]
    fn a_server_nonce_that_does_not_extend_ours_is_refused() {
        let other = "r=somebody-else,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        assert_eq!(parse(other).unwrap_err(), ScramError::NonceMismatch);
        // Exactly our nonce: the broker added nothing.
        let same = format!("r={RFC_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
        assert_eq!(parse(&same).unwrap_err(), ScramError::NonceMismatch);
    }

    #[test]
    fn iteration_counts_outside_kafkas_range_are_refused_naming_the_count() {
        assert_eq!(
            parse(&with_iterations("1000000")).unwrap().iterations,
            1_000_000
        );
        assert_eq!(parse(&with_iterations("16384")).unwrap().iterations, 16384);
        for (raw, count) in [
            ("1000001", 1_000_001u64),
            ("4095", 4095),
            ("0", 0),
            ("4294967296", 4_294_967_296),
            ("99999999999999999999999", u64::MAX),
        ] {
            let error = parse(&with_iterations(raw)).unwrap_err();
            assert_eq!(error, ScramError::IterationCount { count });
            if count < u64::MAX {
                assert!(error.to_string().contains(raw), "{error}");
            }
        }
        for bad in ["", "-5", "+4096", "4096x", "0x1000"] {
            assert_eq!(
                parse(&with_iterations(bad)).unwrap_err(),
                ScramError::BadIterations,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn oversized_or_malformed_server_first_messages_are_errors() {
        let long = format!("{RFC_FIRST},x={}", "a".repeat(MAX_SERVER_MESSAGE));
        assert_eq!(
            parse(&long).unwrap_err(),
            ScramError::MessageTooLong("server-first-message")
        );
        assert_eq!(
            ServerFirst::parse(b"r=\xff\xfe", RFC_NONCE).unwrap_err(),
            ScramError::NotUtf8("server-first-message")
        );
        let long_nonce = format!("r={RFC_NONCE}{},s=AAAA,i=4096", "n".repeat(MAX_NONCE));
        assert_eq!(parse(&long_nonce).unwrap_err(), ScramError::BadNonce);
        let spaced = format!("r={RFC_NONCE} x,s=AAAA,i=4096");
        assert_eq!(parse(&spaced).unwrap_err(), ScramError::BadNonce);
        let big_salt = format!(
            "r={RFC_NONCE}x,s={},i=4096",
            "A".repeat(MAX_SALT_BASE64 + 4)
        );
        assert_eq!(parse(&big_salt).unwrap_err(), ScramError::BadSalt);
        for salt in ["", "!!!!", "W22ZaJ0SNY7soEsUEjb6gQ"] {
            let first = format!("r={RFC_NONCE}x,s={salt},i=4096");
            assert_eq!(parse(&first).unwrap_err(), ScramError::BadSalt, "{salt:?}");
        }
        assert_eq!(
            parse(&format!("m=ext,{RFC_FIRST}")).unwrap_err(),
            ScramError::MandatoryExtension
        );
        for (message, key) in [
            ("", "r="),
            ("s=AAAA,i=4096", "r="),
            ("r=rOprNGfwEbeRWgbNEkqOx,i=4096", "s="),
            ("r=rOprNGfwEbeRWgbNEkqOx,s=AAAA", "i="),
        ] {
            assert_eq!(parse(message).unwrap_err(), ScramError::Missing(key));
        }
    }

    #[test]
    fn server_final_errors_are_bounded() {
        let quoted = format!("e={}", "x".repeat(10_000));
        assert_eq!(
            verify_server_final(&quoted.as_bytes()[..MAX_SERVER_MESSAGE], "sig"),
            Err(ScramError::ServerError("x".repeat(MAX_QUOTED_ERROR)))
        );
        assert_eq!(
            verify_server_final(quoted.as_bytes(), "sig"),
            Err(ScramError::MessageTooLong("server-final-message"))
        );
        assert_eq!(
            verify_server_final(b"\xff", "sig"),
            Err(ScramError::NotUtf8("server-final-message"))
        );
        assert_eq!(
            verify_server_final(b"", "sig"),
            Err(ScramError::BadSignature)
        );
    }

    fn config(mechanism: SaslMechanism) -> SaslConfig {
        SaslConfig {
            mechanism,
            username: "user".into(),
            password: "pencil".into(),
        }
    }

    #[test]
    fn plain_sends_one_token_and_is_done_at_the_answer() {
        let mut conversation = Conversation::new(config(SaslMechanism::Plain));
        assert_eq!(conversation.mechanism(), "PLAIN");
        assert_eq!(conversation.first_token(), b"\0user\0pencil");
        assert_eq!(conversation.answer(b""), Ok(None));
        assert_eq!(conversation.answer(b""), Err(ScramError::OutOfTurn));
    }

    /// A whole SCRAM-SHA-256 exchange, the server side computed as the broker would.
    #[test]
    fn a_scram_conversation_proves_the_password_and_checks_the_server() {
        for forged in [false, true] {
            let mut conversation = Conversation::new(config(SaslMechanism::ScramSha256));
            let first = String::from_utf8(conversation.first_token()).unwrap();
            let bare = first.strip_prefix("n,,").unwrap().to_string();
            let nonce = bare.strip_prefix("n=user,r=").unwrap();
            let server_first = format!("r={nonce}server,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
            let client_final = conversation
                .answer(server_first.as_bytes())
                .unwrap()
                .unwrap();
            let parsed = ServerFirst::parse(server_first.as_bytes(), nonce).unwrap();
            let salted = Hash::Sha256
                .salted_password(b"pencil", &parsed.salt, 4096)
                .unwrap();
            let (expected_final, signature) = client_final_for(&salted, &bare, &parsed);
            assert_eq!(String::from_utf8(client_final).unwrap(), expected_final);
            let server_final = if forged {
                "v=AAAA".to_string()
            } else {
                format!("v={signature}")
            };
            let outcome = conversation.answer(server_final.as_bytes());
            if forged {
                assert_eq!(outcome, Err(ScramError::BadSignature));
            } else {
                assert_eq!(outcome, Ok(None));
            }
        }
    }

    fn client_final_for(salted: &[u8], bare: &str, first: &ServerFirst) -> (String, String) {
        client_final(Hash::Sha256, salted, bare, first).unwrap()
    }

    #[test]
    fn names_are_escaped() {
        assert_eq!(sasl_name("a=b,c"), "a=3Db=2Cc");
    }
}
