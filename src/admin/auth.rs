//! Bearer token authentication of the admin API (`[admin] token_file`): every request
//! but the probes carries `Authorization: Bearer <token>`, else 401.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{json_error, Access};

pub(crate) async fn require_token(
    State(access): State<Access>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = (access.settings)().token else {
        return next.run(request).await;
    };
    let message = match bearer(request.headers()) {
        Some(given) if tokens_match(given, expected.expose()) => {
            return next.run(request).await;
        }
        Some(_) => "the bearer token is wrong",
        None => "an Authorization: Bearer <token> header is required",
    };
    let mut response = json_error(StatusCode::UNAUTHORIZED, message);
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The token of `Authorization: Bearer <token>` (the scheme is case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Constant time, over digests so that neither the content nor the length of the
/// token shows in the time an answer takes.
fn tokens_match(given: &str, expected: &str) -> bool {
    Sha256::digest(given.as_bytes())
        .ct_eq(&Sha256::digest(expected.as_bytes()))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::tests::{app, send};
    use axum::http::Method;

    #[test]
    fn tokens_compare_whole() {
        assert!(tokens_match("s3cret", "s3cret"));
        assert!(!tokens_match("s3cre", "s3cret"));
        assert!(!tokens_match("s3creT", "s3cret"));
        assert!(!tokens_match("", "s3cret"));
    }

    #[tokio::test]
    async fn only_the_right_bearer_token_passes() {
        let app = app(Some("s3cret"), &[], &[]);
        let local = ("host", "127.0.0.1:8090");
        let (status, body, headers) =
            crate::admin::tests::send_full(&app, Method::GET, "/x", &[local]).await;
        assert_eq!((status, body["error_code"].as_u64()), (401, Some(401)));
        assert_eq!(headers.get("www-authenticate").unwrap(), "Bearer");
        for wrong in ["Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "s3cret"] {
            let (status, _) =
                send(&app, Method::GET, "/x", &[local, ("authorization", wrong)]).await;
            assert_eq!(status, 401, "{wrong}");
        }
        for right in ["Bearer s3cret", "bearer  s3cret "] {
            let (status, _) =
                send(&app, Method::GET, "/x", &[local, ("authorization", right)]).await;
            assert_eq!(status, 200, "{right}");
        }
        let (status, _) = send(&app, Method::GET, "/healthz", &[local]).await;
        assert_eq!(status, 200);
        let (status, _) = send(&app, Method::GET, "/readyz", &[local]).await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn without_a_token_file_no_token_is_asked() {
        let app = app(None, &[], &[]);
        let (status, _) = send(&app, Method::GET, "/x", &[("host", "localhost")]).await;
        assert_eq!(status, 200);
    }
}
