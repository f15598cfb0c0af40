//! A connection kept from one round of a periodic job to the next (a heartbeat, a
//! check every few seconds). Opening one per round costs the broker a TCP, TLS and
//! SASL handshake each time, and brokers cap how fast connections may be opened
//! (`max.connection.creation.rate`); a fleet of instances doing that every two
//! seconds is churn an operator sees.

use std::future::Future;

use super::client::{ClientError, KafkaConnection};

/// Empty until the first call; forgotten after a call that failed, so the next call
/// opens a new one. `S` is how the connection was made (the cluster's address and
/// security settings): a call with other settings does not use it.
pub struct KeptConnection<S> {
    kept: Option<(S, KafkaConnection)>,
}

impl<S> std::fmt::Debug for KeptConnection<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addr = self.kept.as_ref().map(|(_, conn)| conn.addr());
        f.debug_struct("KeptConnection").field("to", &addr).finish()
    }
}

impl<S> Default for KeptConnection<S> {
    fn default() -> Self {
        Self { kept: None }
    }
}

impl<S: PartialEq> KeptConnection<S> {
    /// Runs `call` on the connection kept for `settings`, or on the one `connect`
    /// opens (only awaited then). `call` gets the connection and hands it back with
    /// its result. A call that fails on a connection kept from before is made once
    /// more on a new one: the broker may have closed it meanwhile (idle, restarted) or
    /// no longer be the one to ask (leadership moved). So `call` must be safe to
    /// repeat. A call dropped midway (a timeout) drops its connection with it.
    pub async fn call<T, E, F>(
        &mut self,
        settings: S,
        connect: impl Future<Output = Result<KafkaConnection, ClientError>>,
        mut call: impl FnMut(KafkaConnection) -> F,
    ) -> Result<T, E>
    where
        E: From<ClientError>,
        F: Future<Output = (KafkaConnection, Result<T, E>)>,
    {
        if let Some((kept_settings, conn)) = self.kept.take() {
            if kept_settings == settings {
                match call(conn).await {
                    (conn, Ok(value)) => {
                        self.kept = Some((settings, conn));
                        return Ok(value);
                    }
                    (_, Err(_)) => {}
                }
            }
        }
        let (conn, result) = call(connect.await?).await;
        if result.is_ok() {
            self.kept = Some((settings, conn));
        }
        result
    }

    /// Closes the kept connection (a call on it was given up).
    pub fn forget(&mut self) {
        self.kept = None;
    }
}

#[cfg(test)]
mod tests {
    //! Against a fake broker that counts the connections it accepts and answers
    //! ApiVersions; told to, it closes each connection after its first answer, or
    //! leaves every later request unanswered.

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::{BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::{
        ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
    };
    use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::KeptConnection;
    use crate::kafka::client::{ClientError, KafkaConnection};

    const VERSION: i16 = 0;

    #[derive(Clone, Copy, PartialEq)]
    enum After {
        /// Answers every request.
        Nothing,
        /// Closes the connection after its first answer.
        OneAnswerClose,
        /// Reads every later request and answers none.
        OneAnswerSilence,
    }

    async fn answer(mut socket: TcpStream, after: After) {
        let mut answered = 0;
        loop {
            let Ok(len) = socket.read_i32().await else {
                return;
            };
            let mut frame = vec![0; len.max(0) as usize];
            if socket.read_exact(&mut frame).await.is_err() {
                return;
            }
            let mut frame = Bytes::from(frame);
            let header_version = ApiKey::ApiVersions.request_header_version(VERSION);
            let header = RequestHeader::decode(&mut frame, header_version).expect("header");
            if answered > 0 && after == After::OneAnswerSilence {
                continue;
            }
            answered += 1;
            let mut body = BytesMut::new();
            ResponseHeader::default()
                .with_correlation_id(header.correlation_id)
                .encode(&mut body, ApiVersionsResponse::header_version(VERSION))
                .expect("encode header");
            ApiVersionsResponse::default()
                .encode(&mut body, VERSION)
                .expect("encode");
            let mut out = BytesMut::new();
            out.put_i32(body.len() as i32);
            out.put(body);
            if socket.write_all(&out).await.is_err() || after == After::OneAnswerClose {
                return;
            }
        }
    }

    /// The fake's address and its count of accepted connections.
    async fn fake_broker(after: After) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(answer(socket, after));
            }
        });
        (addr, accepted)
    }

    async fn api_versions<S: PartialEq>(
        kept: &mut KeptConnection<S>,
        settings: S,
        addr: &str,
    ) -> Result<(), ClientError> {
        kept.call(
            settings,
            KafkaConnection::connect(addr, "test", Duration::from_secs(5)),
            |mut conn| async move {
                let answer = conn.call(&ApiVersionsRequest::default(), VERSION).await;
                (conn, answer.map(|_| ()))
            },
        )
        .await
    }

    #[tokio::test]
    async fn calls_share_one_connection() {
        let (addr, accepted) = fake_broker(After::Nothing).await;
        let mut kept = KeptConnection::default();
        for _ in 0..5 {
            api_versions(&mut kept, (), &addr).await.expect("answered");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn other_settings_get_a_new_connection() {
        let (addr, accepted) = fake_broker(After::Nothing).await;
        let mut kept = KeptConnection::default();
        for settings in ["old", "old", "new", "new"] {
            api_versions(&mut kept, settings, &addr)
                .await
                .expect("answered");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_broker_closed_is_replaced_without_an_error() {
        let (addr, accepted) = fake_broker(After::OneAnswerClose).await;
        let mut kept = KeptConnection::default();
        for _ in 0..3 {
            api_versions(&mut kept, (), &addr).await.expect("answered");
        }
        // Each call after the first found its connection closed and made a new one.
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_failed_call_on_a_new_connection_is_not_repeated_nor_kept() {
        let (addr, accepted) = fake_broker(After::Nothing).await;
        let mut kept = KeptConnection::default();
        let calls = AtomicUsize::new(0);
        let failed: Result<(), ClientError> = kept
            .call(
                (),
                KafkaConnection::connect(&addr, "test", Duration::from_secs(5)),
                |conn| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async move { (conn, Err(ClientError::Protocol("refused".into()))) }
                },
            )
            .await;
        assert!(matches!(failed, Err(ClientError::Protocol(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        api_versions(&mut kept, (), &addr).await.expect("answered");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_call_given_up_midway_leaves_no_connection_behind() {
        let (addr, accepted) = fake_broker(After::OneAnswerSilence).await;
        let mut kept = KeptConnection::default();
        api_versions(&mut kept, (), &addr).await.expect("answered");
        let unanswered = tokio::time::timeout(
            Duration::from_millis(200),
            api_versions(&mut kept, (), &addr),
        );
        assert!(unanswered.await.is_err(), "the kept connection went silent");
        // Had the silent connection been kept, this would wait out its request
        // timeout (30 s) before trying a new one.
        let next =
            tokio::time::timeout(Duration::from_secs(10), api_versions(&mut kept, (), &addr));
        next.await
            .expect("not stuck on the silent connection")
            .expect("answered on a new connection");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_broker_that_cannot_be_reached_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let mut kept = KeptConnection::default();
        assert!(api_versions(&mut kept, (), &addr).await.is_err());
    }
}
