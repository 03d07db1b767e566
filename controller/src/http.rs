//! The controller's HTTP API on upstream's paths and codes: `GET /healthz`,
//! `GET /v1/cert.pem`, `POST /v1/verify` (200 opens, 409 does not; rate limited per
//! client), `POST /v1/rotate` (re-sealed to the newest key), both bounded in the RSA work
//! they do at once; sealsync's `GET /v1/keys` (the
//! key Secrets' public facts); and `/metrics` on its own port.
//! Bodies are untrusted: their size and value count are capped before any RSA work.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use prometheus_client::registry::Registry;
use sealsync_api::{KeyList, SealedSecret, check_value_count, parse_json, reencrypt, unseal};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::generator::check_data_form;
use crate::keys::KeyStore;
use crate::metrics::ControllerMetrics;

/// Largest request body, 2 MiB: room for any SealedSecret a cluster can store (etcd takes
/// objects of up to 1.5 MiB), also pretty-printed; [`sealsync_api::MAX_SEALED_VALUES`] values
/// of 2048-bit keys fit. Larger bodies get 413 before they are read whole.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Most keys `/v1/keys` lists (the newest): its answer stays under ~400 KiB however many
/// key Secrets someone creates.
const MAX_LISTED_KEYS: usize = 1000;

/// Most client addresses the `/v1/verify` rate limiter keeps state for.
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// Requests of `/v1/verify` and `/v1/rotate` doing RSA work at once, per core (each may be
/// thousands of decryptions). More get 429 at once, which clients retry, rather than
/// queueing without bound on the blocking pool: a flood of rotations, which the per-client
/// rate limit of verifications does not cover, cannot pile up work.
const RSA_REQUESTS_PER_CORE: usize = 2;

/// What the API handlers share.
#[derive(Debug)]
pub struct ApiState {
    keys: Arc<KeyStore>,
    metrics: ControllerMetrics,
    verify_limit: ClientLimiter,
    rsa_slots: Arc<Semaphore>,
    accept_deprecated_data: bool,
}

impl ApiState {
    /// `rate` verifications per second per client address, at most `burst` at once; the
    /// deprecated `spec.data` refused (409) unless `accept_deprecated_data`, as the reconciler does.
    pub fn new(
        keys: Arc<KeyStore>,
        metrics: ControllerMetrics,
        rate: NonZeroU32,
        burst: NonZeroU32,
        accept_deprecated_data: bool,
    ) -> Self {
        Self {
            keys,
            metrics,
            verify_limit: ClientLimiter::new(
                Quota::per_second(rate).allow_burst(burst),
                DefaultClock::default(),
            ),
            rsa_slots: Arc::new(Semaphore::new(
                RSA_REQUESTS_PER_CORE * std::thread::available_parallelism().map_or(1, |n| n.get()),
            )),
            accept_deprecated_data,
        }
    }

    /// A slot for one request's RSA work, if one is free.
    fn rsa_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.rsa_slots.clone().try_acquire_owned().ok()
    }
}

/// The answer when no RSA slot is free: retry.
fn busy() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, "1")],
        "busy: too many verifications and rotations at once; retry\n",
    )
        .into_response()
}

/// A per-address rate limiter with bounded state: at [`MAX_TRACKED_CLIENTS`] addresses, those
/// back to a full allowance are forgotten; while it is still full (a flood from that many
/// addresses in about a second), requests wait (429) instead of adding state.
#[derive(Debug)]
struct ClientLimiter<C: Clock = DefaultClock> {
    limiter: RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, C, NoOpMiddleware<C::Instant>>,
}

impl<C: Clock> ClientLimiter<C> {
    fn new(quota: Quota, clock: C) -> Self {
        Self {
            limiter: RateLimiter::new(quota, DefaultKeyedStateStore::default(), clock),
        }
    }

    fn admit(&self, client: IpAddr) -> bool {
        if self.limiter.len() >= MAX_TRACKED_CLIENTS {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
            if self.limiter.len() >= MAX_TRACKED_CLIENTS {
                return false;
            }
        }
        self.limiter.check_key(&client).is_ok()
    }
}

/// The API router; serve it with `into_make_service_with_connect_info::<SocketAddr>()`.
pub fn api_router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/cert.pem", get(certificate))
        .route("/v1/keys", get(list_keys))
        .route("/v1/verify", post(verify))
        .route("/v1/rotate", post(rotate))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
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

/// Every key Secret's fingerprint, validity, creation, status and whether it seals, oldest
/// first; no key material. `omitted` counts the oldest left out over [`MAX_LISTED_KEYS`].
async fn list_keys(State(state): State<Arc<ApiState>>) -> Response {
    let keys = state.keys.current();
    let omitted = keys.inventory.len().saturating_sub(MAX_LISTED_KEYS);
    let list = KeyList {
        keys: keys.inventory[omitted..].to_vec(),
        omitted,
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(&list).expect("a key list serializes"),
    )
        .into_response()
}

/// The SealedSecret of a request, refused before any RSA work when it is not one (400), holds
/// too many values (413) or is of the deprecated form this controller refuses to open (409,
/// like a SealedSecret that does not open). Messages name fields and types, never a value.
fn parse(state: &ApiState, body: &[u8]) -> Result<SealedSecret, (StatusCode, String)> {
    let sealed: SealedSecret = parse_json(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("the body is not a SealedSecret in JSON: {e}\n"),
        )
    })?;
    check_value_count(&sealed).map_err(|e| (StatusCode::PAYLOAD_TOO_LARGE, format!("{e}\n")))?;
    check_data_form(&sealed, state.accept_deprecated_data)
        .map_err(|e| (StatusCode::CONFLICT, format!("{e}\n")))?;
    Ok(sealed)
}

async fn verify(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    if !state.verify_limit.admit(client.ip()) {
        return (StatusCode::TOO_MANY_REQUESTS, "too many requests\n").into_response();
    }
    let sealed = match parse(&state, &body) {
        Ok(sealed) => sealed,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(slot) = state.rsa_slot() else {
        return busy();
    };
    let keys = state.keys.current();
    let opened = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        unseal(&sealed, &keys.keyring).is_ok()
    })
    .await;
    match opened {
        Ok(true) => StatusCode::OK.into_response(),
        Ok(false) => StatusCode::CONFLICT.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn rotate(State(state): State<Arc<ApiState>>, body: Bytes) -> Response {
    let sealed = match parse(&state, &body) {
        Ok(sealed) => sealed,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(slot) = state.rsa_slot() else {
        return busy();
    };
    let keys = state.keys.current();
    let resealed = tokio::task::spawn_blocking(move || {
        let _slot = slot;
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use governor::clock::FakeRelativeClock;
    use std::net::Ipv6Addr;
    use std::time::Duration;
    use tower::ServiceExt;

    /// A controller without keys.
    fn keyless(accept_deprecated_data: bool) -> ApiState {
        let mut registry = Registry::default();
        let many = NonZeroU32::new(1000).unwrap();
        ApiState::new(
            Arc::new(KeyStore::default()),
            ControllerMetrics::register(&mut registry),
            many,
            many,
            accept_deprecated_data,
        )
    }

    /// Status and body of `POST path` with `body` to a controller without keys.
    async fn post(path: &str, body: Vec<u8>) -> (StatusCode, String) {
        post_to(keyless(true), path, body).await
    }

    async fn post_to(state: ApiState, path: &str, body: Vec<u8>) -> (StatusCode, String) {
        let state = Arc::new(state);
        let request = Request::post(path)
            .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))))
            .body(Body::from(body))
            .unwrap();
        let response = api_router(state).oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn keys_are_listed_newest_last_up_to_a_bound() {
        let state = keyless(true);
        let key = |i: usize| sealsync_api::KeyInfo {
            secret: format!("key-{i}"),
            fingerprint: Some(format!("SHA256:{i}")),
            created: None,
            not_before: None,
            not_after: None,
            status: "active".into(),
            sealing: i == MAX_LISTED_KEYS + 4,
            problem: None,
        };
        state.keys.replace(crate::keys::KeySet {
            inventory: (0..MAX_LISTED_KEYS + 5).map(key).collect(),
            ..crate::keys::KeySet::default()
        });
        let request = Request::get("/v1/keys")
            .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))))
            .body(Body::empty())
            .unwrap();
        let response = api_router(Arc::new(state)).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let list: KeyList = serde_json::from_slice(&body).unwrap();
        assert_eq!(list.omitted, 5);
        assert_eq!(list.keys.len(), MAX_LISTED_KEYS);
        assert_eq!(list.keys[0].secret, "key-5", "the oldest are left out");
        assert!(list.keys.last().unwrap().sealing);
    }

    fn sealed_secret_json(encrypted_data: &str) -> Vec<u8> {
        format!(
            r#"{{"apiVersion":"bitnami.com/v1alpha1","kind":"SealedSecret","metadata":{{"name":"db","namespace":"prod"}},"spec":{{"encryptedData":{encrypted_data}}}}}"#
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn malformed_bodies_are_refused_without_their_values() {
        for path in ["/v1/verify", "/v1/rotate"] {
            for (value, found) in [
                ("987654321", "an integer"),
                ("false", "a boolean"),
                (r#"{"s3cr3t":"s3cr3t"}"#, "a map"),
                (r#"["s3cr3t"]"#, "a list"),
            ] {
                let (status, body) =
                    post(path, sealed_secret_json(&format!(r#"{{"pin":{value}}}"#))).await;
                assert_eq!(status, StatusCode::BAD_REQUEST);
                assert_eq!(
                    body,
                    format!(
                        "the body is not a SealedSecret in JSON: spec.encryptedData.pin: \
                         expected a string, found {found}{}\n",
                        if found.starts_with("a m") || found.starts_with("a l") {
                            ""
                        } else {
                            " (quote it)"
                        }
                    )
                );
            }
        }
    }

    #[tokio::test]
    async fn bodies_over_the_caps_are_refused_by_their_size() {
        let values: Vec<String> = (0..=sealsync_api::MAX_SEALED_VALUES)
            .map(|i| format!(r#""k{i}":"AAAA""#))
            .collect();
        let too_many = sealed_secret_json(&format!("{{{}}}", values.join(",")));
        for path in ["/v1/verify", "/v1/rotate"] {
            let (status, body) = post(path, too_many.clone()).await;
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
            assert_eq!(
                body,
                "SealedSecret prod/db has 4097 values, more than the 4096 a SealedSecret may \
                 hold: split it into several\n"
            );
            let (status, _) = post(path, vec![b' '; MAX_BODY_BYTES + 1]).await;
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
            // Just under the size cap, a body is read (and then found not to be JSON).
            let (status, _) = post(path, vec![b' '; MAX_BODY_BYTES]).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
        }
    }

    #[tokio::test]
    async fn the_deprecated_data_form_is_refused_when_not_accepted() {
        let legacy = br#"{"apiVersion":"bitnami.com/v1alpha1","kind":"SealedSecret","metadata":{"name":"db","namespace":"prod"},"spec":{"data":"AgBwhole"}}"#;
        for path in ["/v1/verify", "/v1/rotate"] {
            let (status, body) = post_to(keyless(false), path, legacy.to_vec()).await;
            assert_eq!(status, StatusCode::CONFLICT, "{path}");
            assert_eq!(
                body,
                "SealedSecret prod/db uses the deprecated spec.data, refused \
                 (--accept-deprecated-v1-data=false): re-seal it into spec.encryptedData\n"
            );
            // Accepted (the default), it is opened, here by no key.
            let (status, body) = post(path, legacy.to_vec()).await;
            assert_eq!(status, StatusCode::CONFLICT, "{path}");
            assert!(!body.contains("deprecated"), "{path}: {body}");
        }
    }

    #[tokio::test]
    async fn rsa_work_beyond_the_slots_is_refused_at_once_with_retry_after() {
        let state = keyless(true);
        let slots = state.rsa_slots.available_permits();
        assert!(slots >= RSA_REQUESTS_PER_CORE);
        let taken = state
            .rsa_slots
            .clone()
            .try_acquire_many_owned(u32::try_from(slots).unwrap())
            .unwrap();
        let state = Arc::new(state);
        let send = |path: &str| {
            let request = Request::post(path)
                .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))))
                .body(Body::from(sealed_secret_json(r#"{"k":"AgBx"}"#)))
                .unwrap();
            api_router(state.clone()).oneshot(request)
        };
        for path in ["/v1/verify", "/v1/rotate"] {
            let response = send(path).await.unwrap();
            assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
            assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        }
        drop(taken);
        let response = send("/v1/verify").await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::CONFLICT,
            "a free slot: opened, by no key"
        );
        assert_eq!(
            state.rsa_slots.available_permits(),
            slots,
            "slots are given back"
        );
    }

    fn limiter(clock: &FakeRelativeClock) -> ClientLimiter<FakeRelativeClock> {
        let two = NonZeroU32::new(2).unwrap();
        ClientLimiter::new(Quota::per_second(two).allow_burst(two), clock.clone())
    }

    fn address(n: usize) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(n as u128 + 1))
    }

    #[test]
    fn each_client_gets_its_burst_then_waits() {
        let clock = FakeRelativeClock::default();
        let limiter = limiter(&clock);
        assert!(limiter.admit(address(0)));
        assert!(limiter.admit(address(0)));
        assert!(!limiter.admit(address(0)));
        assert!(
            limiter.admit(address(1)),
            "another client has its own allowance"
        );
        clock.advance(Duration::from_millis(500));
        assert!(limiter.admit(address(0)));
    }

    #[test]
    fn the_limiter_keeps_state_for_a_bounded_number_of_clients() {
        let clock = FakeRelativeClock::default();
        let limiter = limiter(&clock);
        for n in 0..MAX_TRACKED_CLIENTS {
            assert!(limiter.admit(address(n)));
        }
        // Full of clients seen just now: a new one waits and adds no state.
        let newcomer = address(MAX_TRACKED_CLIENTS);
        assert!(!limiter.admit(newcomer));
        assert_eq!(limiter.limiter.len(), MAX_TRACKED_CLIENTS);
        // Once they are back to a full allowance, they are forgotten.
        clock.advance(Duration::from_secs(2));
        assert!(limiter.admit(newcomer));
        assert_eq!(limiter.limiter.len(), 1);
    }
}
