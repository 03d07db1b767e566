//! The controller's HTTP API on upstream's paths and codes: `GET /healthz`,
//! `GET /v1/cert.pem`, `POST /v1/verify` (200 opens, 409 does not; rate limited per
//! client), `POST /v1/rotate` (re-sealed to the newest key); and `/metrics` on its own port.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use prometheus_client::registry::Registry;
use sealsync_api::{SealedSecret, reencrypt, unseal};

use crate::keys::KeyStore;
use crate::metrics::ControllerMetrics;

/// What the API handlers share.
#[derive(Debug)]
pub struct ApiState {
    keys: Arc<KeyStore>,
    metrics: ControllerMetrics,
    verify_limit: DefaultKeyedRateLimiter<IpAddr>,
}

impl ApiState {
    /// `rate` verifications per second per client (at least 1), `burst` at once.
    pub fn new(keys: Arc<KeyStore>, metrics: ControllerMetrics, rate: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Self {
            keys,
            metrics,
            verify_limit: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
        }
    }
}

/// The API router; serve it with `into_make_service_with_connect_info::<SocketAddr>()`.
pub fn api_router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/cert.pem", get(certificate))
        .route("/v1/verify", post(verify))
        .route("/v1/rotate", post(rotate))
        .layer(middleware::from_fn_with_state(state.clone(), measure))
        .with_state(state)
}

/// The metrics router.
pub fn metrics_router(registry: Arc<Mutex<Registry>>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || async move {
            let mut text = String::new();
            let encoded = {
                let registry = registry.lock().expect("registry lock");
                prometheus_client::encoding::text::encode(&mut text, &registry)
            };
            match encoded {
                Ok(()) => (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    text,
                )
                    .into_response(),
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            }
        }),
    )
}

async fn measure(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let handler = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".into());
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.http_request(
        &handler,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

async fn certificate(State(state): State<Arc<ApiState>>) -> Response {
    match &state.keys.current().newest {
        Some(cert) => (
            [(header::CONTENT_TYPE, "application/x-pem-file")],
            cert.pem().to_string(),
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no sealing key yet\n").into_response(),
    }
}

fn parse(body: &[u8]) -> Result<SealedSecret, (StatusCode, String)> {
    serde_json::from_slice(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("the body is not a SealedSecret in JSON: {e}\n"),
        )
    })
}

async fn verify(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    if state.verify_limit.check_key(&client.ip()).is_err() {
        return (StatusCode::TOO_MANY_REQUESTS, "too many requests\n").into_response();
    }
    let sealed = match parse(&body) {
        Ok(sealed) => sealed,
        Err(refusal) => return refusal.into_response(),
    };
    let keys = state.keys.current();
    let opened = tokio::task::spawn_blocking(move || unseal(&sealed, &keys.keyring).is_ok()).await;
    match opened {
        Ok(true) => StatusCode::OK.into_response(),
        Ok(false) => StatusCode::CONFLICT.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn rotate(State(state): State<Arc<ApiState>>, body: Bytes) -> Response {
    let sealed = match parse(&body) {
        Ok(sealed) => sealed,
        Err(refusal) => return refusal.into_response(),
    };
    let keys = state.keys.current();
    let resealed = tokio::task::spawn_blocking(move || {
        let newest = keys
            .newest
            .as_ref()
            .ok_or("no sealing key yet".to_string())?;
        reencrypt(&sealed, &keys.keyring, newest.public_key()).map_err(|e| e.to_string())
    })
    .await;
    match resealed {
        Ok(Ok(sealed)) => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&sealed).expect("a SealedSecret serializes"),
        )
            .into_response(),
        // The message names the object and key, never a value.
        Ok(Err(message)) => (StatusCode::CONFLICT, format!("{message}\n")).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
