//! REST resource of a link's cut-over, beside the link's own paths:
//! `POST .../links/{link}/cutover` starts one (or, with `"dry_run": true`, only checks),
//! `GET .../links/{link}/cutover` shows where the latest one is, and
//! `POST .../links/{link}/cutover:abort` aborts it while it can be.
//! Confluent's `POST .../links/{link}/mirrors:reverse-and-start-mirror` and
//! `...:reverse-and-pause-mirror` start a reverse: a cut-over of the named mirrors after
//! which their source topics on the link's cluster are mirrors of them.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::links::error;
use super::AdminState;
use crate::replicator::catalog::Reverse;
use crate::replicator::manager::ApiError;
use crate::replicator::CutoverRequest;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route(
            "/kafka/v3/clusters/{cluster_id}/links/{link}/cutover",
            get(show).post(start),
        )
        .route(
            "/kafka/v3/clusters/{cluster_id}/links/{link}/cutover:abort",
            post(abort),
        )
        .route(
            "/kafka/v3/clusters/{cluster_id}/links/{link}/mirrors:reverse-and-start-mirror",
            post(reverse_and_start),
        )
        .route(
            "/kafka/v3/clusters/{cluster_id}/links/{link}/mirrors:reverse-and-pause-mirror",
            post(reverse_and_pause),
        )
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReverseBody {
    mirror_topic_names: Vec<String>,
    /// Check and return the plan; change nothing.
    #[serde(default)]
    validate_only: bool,
}

async fn reverse_and_start(
    state: State<AdminState>,
    path: Path<(String, String)>,
    body: Result<Json<ReverseBody>, JsonRejection>,
) -> Response {
    reverse(state, path, body, Reverse::Start).await
}

async fn reverse_and_pause(
    state: State<AdminState>,
    path: Path<(String, String)>,
    body: Result<Json<ReverseBody>, JsonRejection>,
) -> Response {
    reverse(state, path, body, Reverse::Pause).await
}

async fn reverse(
    state: State<AdminState>,
    path: Path<(String, String)>,
    body: Result<Json<ReverseBody>, JsonRejection>,
    reverse: Reverse,
) -> Response {
    let body = match body {
        Ok(Json(body)) => body,
        Err(rejection) => return error(ApiError::Invalid(rejection.body_text())),
    };
    if body.mirror_topic_names.is_empty() {
        return error(ApiError::Invalid(
            "mirror_topic_names: name the mirror topics".into(),
        ));
    }
    let request = CutoverRequest {
        topics: body.mirror_topic_names,
        dry_run: body.validate_only,
        reverse: Some(reverse),
        ..CutoverRequest::default()
    };
    start(state, path, Ok(Json(request))).await
}

async fn start(
    State(state): State<AdminState>,
    Path((_cluster, link)): Path<(String, String)>,
    body: Result<Json<CutoverRequest>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => return error(ApiError::Invalid(rejection.body_text())),
    };
    if request.dry_run {
        return match state.replicator.cutover_dry_run(&link, request).await {
            Ok(plan) => Json(plan).into_response(),
            Err(e) => error(e),
        };
    }
    match state.replicator.start_cutover(&link, request).await {
        Ok(view) => (StatusCode::ACCEPTED, Json(view)).into_response(),
        Err(e) => error(e),
    }
}

async fn show(
    State(state): State<AdminState>,
    Path((_cluster, link)): Path<(String, String)>,
) -> Response {
    match state.replicator.cutover(&link).await {
        Ok(view) => Json(view).into_response(),
        Err(e) => error(e),
    }
}

async fn abort(
    State(state): State<AdminState>,
    Path((_cluster, link)): Path<(String, String)>,
) -> Response {
    match state.replicator.abort_cutover(&link).await {
        Ok(view) => Json(view).into_response(),
        Err(e) => error(e),
    }
}
