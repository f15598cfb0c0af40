//! Why a proxied connection ended, tagged by the side at fault so logs say who to blame.

use crate::kafka::codec::CodecError;
use crate::kafka::frame::FrameError;

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("client went away: {0}")]
    ClientGone(std::io::Error),
    #[error("client sent a malformed frame: {0}")]
    ClientFrame(FrameError),
    #[error("client request refused: {0}")]
    ClientRequest(String),
    #[error("client sent no whole request for {0:?}")]
    ClientIdle(std::time::Duration),
    #[error("upstream: {0}")]
    Upstream(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl ConnError {
    pub fn side(&self) -> &'static str {
        match self {
            ConnError::ClientGone(_)
            | ConnError::ClientFrame(_)
            | ConnError::ClientRequest(_)
            | ConnError::ClientIdle(_) => "client",
            ConnError::Upstream(_) => "upstream",
            ConnError::Internal(_) => "internal",
        }
    }

    /// A request body from the client that does not decode is the client's fault.
    pub fn client_codec(e: CodecError) -> Self {
        match e {
            CodecError::Frame(f) => ConnError::ClientFrame(f),
            other => ConnError::ClientFrame(FrameError::MalformedHeader(other.to_string())),
        }
    }

    pub fn upstream(e: impl std::fmt::Display) -> Self {
        ConnError::Upstream(e.to_string())
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        ConnError::Internal(e.to_string())
    }
}
