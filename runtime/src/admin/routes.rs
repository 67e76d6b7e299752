//! The admin API's routes: thin translations between HTTP and [`Daemon`] calls.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use super::AdminState;
use crate::daemon::{ControlError, StateLookup};
use crate::pipeline::control::Reply;
use crate::pipeline::versions::{Change, VersionError};

type Shared = State<Arc<AdminState>>;

pub(super) fn router(state: Arc<AdminState>) -> axum::Router {
    let limit = state.max_upload_bytes;
    let mutating = axum::Router::new()
        .route(
            "/v1/pipelines/{name}/deploy",
            post(deploy).layer(DefaultBodyLimit::max(limit)),
        )
        // The other calls carry no body to speak of.
        .route(
            "/v1/pipelines/{name}/rollback",
            post(rollback).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route(
            "/v1/pipelines/{name}/pause",
            post(pause).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route(
            "/v1/pipelines/{name}/resume",
            post(resume).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    let reads = axum::Router::new()
        .route("/v1/pipelines/{name}/state", get(state_value))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            authorize_read,
        ));
    axum::Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/pipelines", get(pipelines))
        .route("/v1/pipelines/{name}", get(pipeline))
        .route("/v1/pipelines/{name}/history", get(history))
        .merge(reads)
        .merge(mutating)
        .with_state(state)
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = match &self {
            ControlError::NoSuchPipeline(_) => StatusCode::NOT_FOUND,
            ControlError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ControlError::Version(VersionError::Load(_) | VersionError::Init(_)) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ControlError::Version(VersionError::NoPrevious) => StatusCode::CONFLICT,
            ControlError::Version(_) | ControlError::Registry(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        error(status, self)
    }
}

/// Largest body of a mutating call other than a deploy.
const SMALL_BODY: usize = 4 << 10;

/// Mutating calls need the configured bearer token; without one they are disabled. A
/// refusal is answered before the body is read, and the connection closed after it: a
/// caller without the token cannot make the daemon take in an upload. (The CLI sends
/// `Expect: 100-continue`, so it hears the refusal before sending a module.)
async fn authorize(State(state): Shared, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return refuse(
            StatusCode::FORBIDDEN,
            format!(
                "this call is disabled: no admin token is configured; set admin.token in the \
                 config or {} in the daemon's environment",
                crate::config::ADMIN_TOKEN_ENV
            ),
        );
    };
    match bearer(&request) {
        Some(given) if tokens_match(given, token) => next.run(request).await,
        _ => unauthorized(
            "missing or wrong bearer token (Authorization: Bearer <token>; the CLI reads WEIR_ADMIN_TOKEN)",
        ),
    }
}

/// State reads need the read token, or the admin token, when a read token is set.
async fn authorize_read(State(state): Shared, request: Request, next: Next) -> Response {
    let Some(read_token) = &state.read_token else {
        return next.run(request).await;
    };
    let given = bearer(&request);
    let admin = state.token.as_deref();
    let allowed = given.is_some_and(|given| {
        // Both compared, whichever matches: the time taken does not say which.
        let read = tokens_match(given, read_token);
        let admin = admin.is_some_and(|token| tokens_match(given, token));
        read | admin
    });
    if allowed {
        return next.run(request).await;
    }
    unauthorized(
        "state reads need a bearer token (admin.read_token, or the admin token); the CLI reads WEIR_READ_TOKEN or WEIR_ADMIN_TOKEN",
    )
}

/// The bearer token of `request`, if it carries one.
fn bearer(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// 401 with a `WWW-Authenticate` challenge, the connection closed.
fn unauthorized(message: &str) -> Response {
    let mut response = refuse(StatusCode::UNAUTHORIZED, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        "Bearer".parse().expect("a header value"),
    );
    response
}

/// An error answer that closes the connection, its request body unread.
fn refuse(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let mut response = error(status, message);
    response
        .headers_mut()
        .insert(header::CONNECTION, "close".parse().expect("a header value"));
    response
}

/// Whether `given` is `token`, compared through their SHA-256 digests: equal lengths,
/// and no early exit, so the time taken says nothing of the token's content or length.
fn tokens_match(given: &str, token: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(token.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn ready(State(state): Shared) -> Response {
    if state.daemon.ready() {
        Json(json!({ "ready": true })).into_response()
    } else {
        let waiting: Vec<_> = state
            .daemon
            .status()
            .into_iter()
            .map(|p| json!({ "pipeline": p.name, "state": p.state, "partitions": p.partitions }))
            .collect();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "pipelines": waiting })),
        )
            .into_response()
    }
}

/// OpenMetrics for clients that ask for it (Prometheus does), else the classic text
/// format.
async fn metrics(State(state): Shared, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let metrics = state.daemon.metrics();
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            metrics.encode(),
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            metrics.encode_prometheus(),
        )
            .into_response()
    }
}

async fn pipelines(State(state): Shared) -> Response {
    Json(state.daemon.status()).into_response()
}

async fn pipeline(State(state): Shared, Path(name): Path<String>) -> Response {
    match state.daemon.status().into_iter().find(|p| p.name == name) {
        Some(status) => Json(status).into_response(),
        None => ControlError::NoSuchPipeline(name).into_response(),
    }
}

async fn history(State(state): Shared, Path(name): Path<String>) -> Response {
    match state.daemon.history(&name) {
        Ok(events) => Json(events).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Who made a change: the `X-Weir-User` header, else "api".
fn who(headers: &HeaderMap) -> String {
    headers
        .get("x-weir-user")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or("api")
        .to_owned()
}

fn change_response(change: Change) -> Response {
    match change {
        Change::Published(event) => {
            Json(json!({ "changed": true, "version": event.version, "event": event }))
                .into_response()
        }
        Change::Unchanged { version } => {
            Json(json!({ "changed": false, "version": version })).into_response()
        }
    }
}

async fn deploy(
    State(state): Shared,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let wasm = match body {
        Ok(wasm) => wasm,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the module is larger than admin.max_upload_bytes ({} bytes); raise it in the config",
                    state.max_upload_bytes
                ),
            );
        }
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    if wasm.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "the request body is empty; send the module's bytes",
        );
    }
    let by = who(&headers);
    // Compiling takes long for interpreter components: off the async threads.
    let daemon = state.daemon.clone();
    let outcome = tokio::task::spawn_blocking(move || daemon.deploy(&name, &wasm, &by)).await;
    match outcome {
        Ok(Ok(change)) => change_response(change),
        Ok(Err(e)) => e.into_response(),
        Err(join) => error(StatusCode::INTERNAL_SERVER_ERROR, join),
    }
}

async fn rollback(State(state): Shared, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let by = who(&headers);
    let daemon = state.daemon.clone();
    match tokio::task::spawn_blocking(move || daemon.rollback(&name, &by)).await {
        Ok(Ok(change)) => change_response(change),
        Ok(Err(e)) => e.into_response(),
        Err(join) => error(StatusCode::INTERNAL_SERVER_ERROR, join),
    }
}

async fn pause(State(state): Shared, Path(name): Path<String>) -> Response {
    set_paused(&state, name, true).await
}

async fn resume(State(state): Shared, Path(name): Path<String>) -> Response {
    set_paused(&state, name, false).await
}

/// Off the API's thread: recording the pause writes to disk.
async fn set_paused(state: &AdminState, name: String, paused: bool) -> Response {
    let daemon = state.daemon.clone();
    match tokio::task::spawn_blocking(move || daemon.set_paused(&name, paused)).await {
        Ok(Ok(())) => Json(json!({ "paused": paused })).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(join) => error(StatusCode::INTERNAL_SERVER_ERROR, join),
    }
}

#[derive(Debug, Deserialize)]
struct StateQuery {
    key: String,
    /// How `key` is written and how the value is returned: `utf8` (default) or
    /// `base64`.
    #[serde(default)]
    encoding: Encoding,
    topic: Option<String>,
    partition: Option<i32>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Encoding {
    #[default]
    Utf8,
    Base64,
}

async fn state_value(
    State(state): Shared,
    Path(name): Path<String>,
    Query(query): Query<StateQuery>,
) -> Response {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = match query.encoding {
        Encoding::Utf8 => query.key.clone().into_bytes(),
        Encoding::Base64 => match b64.decode(&query.key) {
            Ok(key) => key,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("key is not base64: {e}")),
        },
    };
    let daemon = state.daemon.clone();
    let lookup = tokio::task::spawn_blocking(move || {
        daemon.state_get(&name, &key, query.topic.as_deref(), query.partition)
    })
    .await;
    let lookup = match lookup {
        Ok(Ok(lookup)) => lookup,
        Ok(Err(e)) => return e.into_response(),
        Err(join) => return error(StatusCode::INTERNAL_SERVER_ERROR, join),
    };
    match lookup {
        StateLookup::Owned {
            topic,
            partition,
            answer: Ok(Some(value)),
        } => {
            let (value, encoding) = match (query.encoding, String::from_utf8(value)) {
                (Encoding::Utf8, Ok(text)) => (text, "utf8"),
                (_, Ok(text)) => (b64.encode(text), "base64"),
                (_, Err(bytes)) => (b64.encode(bytes.into_bytes()), "base64"),
            };
            Json(json!({
                "key": query.key, "topic": topic, "partition": partition,
                "value": value, "encoding": encoding,
            }))
            .into_response()
        }
        StateLookup::Owned {
            topic,
            partition,
            answer: Ok(None),
        } => (
            StatusCode::NOT_FOUND,
            Json(json!({
                "error": format!("no value for key {:?} in {topic}/{partition}", query.key),
                "topic": topic, "partition": partition,
            })),
        )
            .into_response(),
        StateLookup::Owned {
            answer: Err(reply @ Reply::NotReady),
            ..
        } => error(StatusCode::SERVICE_UNAVAILABLE, reply),
        StateLookup::Owned {
            answer: Err(reply), ..
        } => error(StatusCode::INTERNAL_SERVER_ERROR, reply),
        StateLookup::NotOwned {
            topic,
            partition,
            owner,
        } => (
            StatusCode::MISDIRECTED_REQUEST,
            Json(json!({
                "error": format!("this instance does not own {topic}/{partition}; ask its owner"),
                "topic": topic, "partition": partition, "owner": owner,
            })),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::tokens_match;

    #[test]
    fn tokens_match_only_themselves() {
        let token = "a-token-of-24-characters";
        assert!(tokens_match(token, token));
        assert!(!tokens_match("a-token-of-24-characterz", token));
        assert!(!tokens_match("a-token", token));
        assert!(!tokens_match("", token));
    }
}
