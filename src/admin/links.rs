//! REST API of cluster links and mirror topics, on Confluent's v3 paths:
//! `/kafka/v3/clusters/{cluster_id}/links[/{link}[/mirrors[:action]]]`.
//! Errors are JSON `{"error_code": <http status>, "message": ...}`.

use std::collections::BTreeMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{json_error, AdminState};
use crate::replicator::manager::{ApiError, Change};
use crate::replicator::restore::RestoreOptions;

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route(
            "/kafka/v3/clusters/{cluster_id}/links",
            get(list_links).post(create_link),
        )
        .route(
            "/kafka/v3/clusters/{cluster_id}/links/{link}",
            get(get_link).delete(delete_link),
        )
        .route(
            "/kafka/v3/clusters/{cluster_id}/links/{link}/{action}",
            get(list_resource).post(mirror_action).put(alter_configs),
        )
}

pub(super) fn error(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    json_error(status, e.to_string())
}

#[derive(Deserialize)]
struct ConfigEntry {
    name: String,
    value: String,
}

#[derive(Deserialize)]
struct CreateLinkBody {
    #[serde(default)]
    configs: Vec<ConfigEntry>,
}

#[derive(Deserialize)]
struct CreateLinkQuery {
    link_name: String,
    #[serde(default)]
    validate_only: bool,
}

async fn create_link(
    State(state): State<AdminState>,
    Query(query): Query<CreateLinkQuery>,
    Json(body): Json<CreateLinkBody>,
) -> Response {
    let raw: BTreeMap<String, String> = body
        .configs
        .into_iter()
        .map(|c| (c.name, c.value))
        .collect();
    match state
        .replicator
        .create_link(&query.link_name, raw, query.validate_only)
        .await
    {
        Ok(()) => StatusCode::CREATED.into_response(),
        Err(e) => error(e),
    }
}

async fn list_links(State(state): State<AdminState>) -> Response {
    match state.replicator.links().await {
        Ok(links) => Json(json!({ "kind": "KafkaLinkDataList", "data": links })).into_response(),
        Err(e) => error(e),
    }
}

async fn get_link(
    State(state): State<AdminState>,
    Path((_cluster, link)): Path<(String, String)>,
) -> Response {
    match state.replicator.links().await {
        Ok(links) => match links.into_iter().find(|l| l.link_name == link) {
            Some(found) => Json(found).into_response(),
            None => error(ApiError::NotFound(format!(
                "Cluster link '{link}' does not exist."
            ))),
        },
        Err(e) => error(e),
    }
}

#[derive(Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

async fn delete_link(
    State(state): State<AdminState>,
    Path((_cluster, link)): Path<(String, String)>,
    Query(query): Query<DeleteQuery>,
) -> Response {
    match state.replicator.delete_link(&link, query.force).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(e),
    }
}

/// `GET .../links/{link}/mirrors` or `GET .../links/{link}/configs`.
async fn list_resource(
    State(state): State<AdminState>,
    Path((_cluster, link, resource)): Path<(String, String, String)>,
) -> Response {
    match resource.as_str() {
        "mirrors" => {}
        "configs" => {
            return match state.replicator.link_configs(&link).await {
                Ok(configs) => Json(json!({ "kind": "KafkaLinkConfigDataList", "data": configs }))
                    .into_response(),
                Err(e) => error(e),
            }
        }
        other => return error(ApiError::NotFound(format!("no such resource '{other}'"))),
    }
    let link = (link != "-").then_some(link);
    match state.replicator.mirrors(link.as_deref()).await {
        Ok(mirrors) => {
            Json(json!({ "kind": "KafkaMirrorDataList", "data": mirrors })).into_response()
        }
        Err(e) => error(e),
    }
}

#[derive(Deserialize)]
struct AlterEntry {
    name: String,
    #[serde(default)]
    value: Option<String>,
    /// SET (default) or DELETE.
    #[serde(default)]
    operation: Option<String>,
}

#[derive(Deserialize)]
struct AlterBody {
    data: Vec<AlterEntry>,
    /// For `mirrors:alter`: the mirrors to change.
    #[serde(default)]
    mirror_topic_names: Vec<String>,
}

#[derive(Deserialize)]
struct ValidateQuery {
    #[serde(default)]
    validate_only: bool,
}

/// `PUT .../links/{link}/configs:alter` with `{"data":[{"name","value"|"operation":"DELETE"}]}`,
/// and `PUT .../links/{link}/mirrors:alter` with `mirror_topic_names` besides `data`.
async fn alter_configs(
    State(state): State<AdminState>,
    Path((_cluster, link, action)): Path<(String, String, String)>,
    Query(query): Query<ValidateQuery>,
    Json(body): Json<AlterBody>,
) -> Response {
    if action != "configs:alter" && action != "mirrors:alter" {
        return error(ApiError::NotFound(format!("no such action '{action}'")));
    }
    let topics = body.mirror_topic_names;
    let mut set = BTreeMap::new();
    let mut delete = Vec::new();
    for entry in body.data {
        match (entry.operation.as_deref().unwrap_or("SET"), entry.value) {
            ("DELETE", _) => delete.push(entry.name),
            ("SET", Some(value)) => {
                set.insert(entry.name, value);
            }
            ("SET", None) => {
                return error(ApiError::Invalid(format!(
                    "{}: a value is required",
                    entry.name
                )))
            }
            (other, _) => {
                return error(ApiError::Invalid(format!(
                    "{}: unknown operation '{other}' (SET or DELETE)",
                    entry.name
                )))
            }
        }
    }
    if action == "mirrors:alter" {
        return match state
            .replicator
            .alter_mirrors(&link, &topics, &set, &delete)
            .await
        {
            Ok(results) => mirror_results(results),
            Err(e) => error(e),
        };
    }
    match state
        .replicator
        .alter_link(&link, set, &delete, query.validate_only)
        .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(e),
    }
}

#[derive(Deserialize)]
struct MirrorBody {
    source_topic_name: Option<String>,
    mirror_topic_name: Option<String>,
    #[serde(default)]
    mirror_topic_names: Vec<String>,
    #[serde(default)]
    configs: Vec<ConfigEntry>,
    /// For `mirrors:truncate-and-restore`.
    include_partitions: Option<Vec<i32>>,
    #[serde(default)]
    dry_run: bool,
    set_aside_topic: Option<String>,
    source_metadata_topic: Option<String>,
}

async fn mirror_action(
    State(state): State<AdminState>,
    Path((_cluster, link, action)): Path<(String, String, String)>,
    body: Result<Json<MirrorBody>, JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(body)) => body,
        Err(rejection) => {
            let field = if action == "mirrors" {
                "mirror_topic_name"
            } else {
                "mirror_topic_names"
            };
            return error(ApiError::Invalid(format!(
                "a JSON body naming {field} is required ({})",
                rejection.body_text()
            )));
        }
    };
    let change = match action.as_str() {
        "mirrors" => {
            let Some(mirror) = body.mirror_topic_name.or(body.source_topic_name.clone()) else {
                return error(ApiError::Invalid("mirror_topic_name is required".into()));
            };
            let source = body.source_topic_name.as_deref();
            let overrides: BTreeMap<String, String> = body
                .configs
                .into_iter()
                .map(|c| (c.name, c.value))
                .collect();
            return match state
                .replicator
                .create_mirror(&link, &mirror, source, &overrides)
                .await
            {
                Ok(()) => StatusCode::CREATED.into_response(),
                Err(e) => error(e),
            };
        }
        "mirrors:truncate-and-restore" => return truncate_and_restore(&state, &link, body).await,
        "mirrors:pause" => Change::Pause,
        "mirrors:resume" => Change::Resume,
        "mirrors:promote" => Change::Promote,
        "mirrors:failover" => Change::Failover,
        other => return error(ApiError::NotFound(format!("no such action '{other}'"))),
    };
    // An empty list once meant "every mirror of the link": too much for one stray request.
    if body.mirror_topic_names.is_empty() {
        return error(ApiError::Invalid(format!(
            "mirror_topic_names: name the mirror topics to {} (an empty or missing list is refused)",
            action.trim_start_matches("mirrors:")
        )));
    }
    match state
        .replicator
        .change(&link, &body.mirror_topic_names, change)
        .await
    {
        Ok(results) => mirror_results(results),
        Err(e) => error(e),
    }
}

/// One result per mirror topic, as Confluent answers mirror state changes.
fn mirror_results(results: Vec<(String, Result<(), String>)>) -> Response {
    let data: Vec<_> = results
        .into_iter()
        .map(|(topic, result)| match result {
            Ok(()) => {
                json!({ "mirror_topic_name": topic, "error_code": null, "error_message": null })
            }
            Err(message) => {
                json!({ "mirror_topic_name": topic, "error_code": 400, "error_message": message })
            }
        })
        .collect();
    Json(json!({ "kind": "AlterMirrorStatusResponseDataList", "data": data })).into_response()
}

/// `POST .../links/{link}/mirrors:truncate-and-restore`: one report per topic, in turn.
async fn truncate_and_restore(state: &AdminState, link: &str, body: MirrorBody) -> Response {
    if body.mirror_topic_names.is_empty() {
        return error(ApiError::Invalid(
            "mirror_topic_names: name the topics to restore".into(),
        ));
    }
    let options = RestoreOptions {
        include_partitions: body.include_partitions.map(|p| p.into_iter().collect()),
        dry_run: body.dry_run,
        set_aside_topic: body.set_aside_topic,
        source_metadata_topic: body.source_metadata_topic,
    };
    let mut data = Vec::new();
    for topic in &body.mirror_topic_names {
        match state
            .replicator
            .truncate_and_restore(link, topic, &options)
            .await
        {
            Ok(report) => data.push(json!(report)),
            Err(e) => data.push(json!({
                "mirror_topic_name": topic,
                "error_code": e.http_status(),
                "error_message": e.to_string(),
            })),
        }
    }
    Json(json!({ "kind": "TruncateAndRestoreResponseDataList", "data": data })).into_response()
}
