//! Leader election on a `coordination.k8s.io` Lease, so several replicas can run and one
//! acts: the others wait, and take over when the leader stops renewing.
//!
//! Time is judged only by this process's monotonic clock, never by comparing another
//! node's `renewTime` with ours: a standby takes the lease over [`LEASE_DURATION`] after it
//! last saw the holder renew, and the leader stops acting [`RENEW_DEADLINE`] after its last
//! renewal was sent. The difference is the safety margin, so that a leader that was paused
//! or cut off stops before anyone else may start.
//!
//! An identity that may not read or create the Lease (the RBAC of upstream Sealed Secrets,
//! which has no leader election) runs as the only replica, which is what upstream does.
//!
//! Hand-written rather than kube-lease-manager, which judges expiry by the holder's
//! renewTime against the local wall clock (skew tolerated up to a grace period), puts no
//! timeout on its calls and offers no deadline-based "still leading" check.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tracing::{info, warn};

use crate::kubernetes::api_message;

/// How long a standby waits after it last saw the lease renewed before taking it over
/// (client-go's default).
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How long the leader goes on acting after its last successful renewal (client-go's
/// default); shorter than [`LEASE_DURATION`] by the margin for slow clocks and requests.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// Time between two attempts to acquire or renew (client-go's default).
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);
/// Longest wait for one attempt (a read and a write of the Lease): a hung call must not
/// keep the leader from noticing that it could not renew.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest pause between two attempts while the API server fails.
const MAX_ERROR_BACKOFF: Duration = LEASE_DURATION;
// The leader stops acting, and has had a last chance to renew, before a standby may start.
const _: () = assert!(RENEW_DEADLINE.as_secs() + RETRY_PERIOD.as_secs() < LEASE_DURATION.as_secs());

/// Whether this replica may act as the leader now. Cheap to clone and to ask; every
/// leader-only action asks right before it writes.
#[derive(Debug, Clone)]
pub struct Leadership(watch::Receiver<Lead>);

/// What this replica knows of its leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lead {
    /// Not leading (yet, or any more).
    No,
    /// Leading through the lease, renewed at that instant.
    Renewed(Instant),
    /// No lease may be used: the only replica, leading for as long as it runs.
    Alone,
}

impl Leadership {
    /// True while the last renewal of the lease was sent less than [`RENEW_DEADLINE`] ago.
    /// Turns false by itself when renewals stop, even if the renewing task is stuck.
    pub fn is_leading(&self) -> bool {
        match *self.0.borrow() {
            Lead::No => false,
            Lead::Renewed(renewed) => renewed.elapsed() < RENEW_DEADLINE,
            Lead::Alone => true,
        }
    }
}

/// One candidate for the lease `namespace/name`.
#[derive(Debug)]
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    /// When the last renewal that kept this replica the leader was sent.
    renewed: watch::Sender<Lead>,
    /// The holder and renewTime last seen, and when they were first seen so.
    observed: Mutex<Option<Observed>>,
}

#[derive(Debug)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    at: Instant,
}

/// The lease could not be renewed: another replica may lead now.
#[derive(Debug, thiserror::Error)]
#[error(
    "lost the leader lease {lease}: {why}; stopping so that this replica starts again as a standby"
)]
pub struct LeaseLost {
    pub lease: String,
    pub why: String,
}

/// What one attempt found.
enum Attempt {
    /// This replica holds the lease; the write that proves it was sent at that instant.
    Held(Instant),
    /// Another replica holds it.
    HeldBy(String),
    /// The lease may not be read, or there is none and it may not be created.
    Forbidden(kube::Error),
}

impl LeaderElection {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            renewed: watch::Sender::new(Lead::No),
            observed: Mutex::default(),
        }
    }

    /// The signal of this candidate's leadership, false until [`Self::acquire`] returns.
    pub fn leadership(&self) -> Leadership {
        Leadership(self.renewed.subscribe())
    }

    /// Waits until this replica holds the lease, then keeps renewing it in a task of its
    /// own from that moment on, whatever the rest of the process is busy with.
    pub async fn acquire(self) -> Leader {
        let mut announced = None;
        let mut delay = RETRY_PERIOD;
        let renewed = loop {
            match timeout(CALL_TIMEOUT, self.attempt(true)).await {
                Ok(Ok(Attempt::Held(sent))) => break sent,
                Ok(Ok(Attempt::Forbidden(e))) => return self.alone(&e),
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    if announced.as_ref() != Some(&holder) {
                        info!(lease = %self.name, %holder, "another replica leads; waiting for the lease");
                        announced = Some(holder);
                    }
                    delay = RETRY_PERIOD;
                }
                Ok(Err(e)) => {
                    warn!(lease = %self.name, error = %api_message(&e), hint = remedy(&e), retry_in = ?delay, "cannot take the leader lease");
                    delay = (delay * 2).min(MAX_ERROR_BACKOFF);
                }
                Err(_) => {
                    warn!(lease = %self.name, timeout = ?CALL_TIMEOUT, hint = UNREACHABLE, retry_in = ?delay, "no answer about the leader lease");
                    delay = (delay * 2).min(MAX_ERROR_BACKOFF);
                }
            }
            tokio::time::sleep(delay).await;
        };
        self.renewed.send_replace(Lead::Renewed(renewed));
        info!(lease = %self.name, identity = %self.identity, "became the leader");
        let election = Arc::new(self);
        let renewing = tokio::spawn(election.clone().renew(renewed));
        Leader { election, renewing }
    }

    /// Renews every [`RETRY_PERIOD`] until a renewal could not be made within
    /// [`RENEW_DEADLINE`] of the last one, or another replica holds the lease.
    async fn renew(self: Arc<Self>, mut renewed: Instant) -> LeaseLost {
        let why = loop {
            tokio::time::sleep(RETRY_PERIOD).await;
            // Also reached at once by a process that was frozen for longer than this.
            let remaining = (renewed + RENEW_DEADLINE).saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break format!("not renewed for {} s", RENEW_DEADLINE.as_secs());
            }
            match timeout(remaining.min(CALL_TIMEOUT), self.attempt(false)).await {
                Ok(Ok(Attempt::Held(sent))) => {
                    renewed = sent;
                    self.renewed.send_replace(Lead::Renewed(sent));
                }
                Ok(Ok(Attempt::HeldBy(holder))) => break format!("the Lease names {holder:?} now"),
                Ok(Ok(Attempt::Forbidden(e))) | Ok(Err(e)) => {
                    warn!(lease = %self.name, error = %api_message(&e), hint = remedy(&e), "cannot renew the leader lease");
                }
                Err(_) => warn!(lease = %self.name, "no answer to the renewal of the leader lease"),
            }
        };
        self.renewed.send_replace(Lead::No);
        LeaseLost {
            lease: self.name.clone(),
            why,
        }
    }

    /// One read and, when the lease is ours or may be taken (`take`), one write guarded by
    /// resourceVersion, so that two replicas racing cannot both win.
    async fn attempt(&self, take: bool) -> Result<Attempt, kube::Error> {
        let lease = match self.api.get_opt(&self.name).await {
            Err(e) if forbidden(&e) => return Ok(Attempt::Forbidden(e)),
            lease => lease?,
        };
        let Some(mut lease) = lease else {
            // Creating is atomic too: whoever creates the lease holds it.
            let now = MicroTime(Timestamp::now());
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now.clone(), now, 0)),
            };
            let sent = Instant::now();
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Held(sent)),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::HeldBy(String::new())),
                Err(e) if forbidden(&e) => Ok(Attempt::Forbidden(e)),
                Err(e) => Err(e),
            };
        };
        let current = lease.spec.clone().unwrap_or_default();
        let holder = current.holder_identity.clone().unwrap_or_default();
        let held_by_us = holder == self.identity;
        let unchanged_for = self.observe(&current);
        if !held_by_us {
            let duration = current
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(LEASE_DURATION, Duration::from_secs);
            if !take || (!holder.is_empty() && unchanged_for < duration) {
                return Ok(Attempt::HeldBy(holder));
            }
        }
        let now = MicroTime(Timestamp::now());
        let transitions = current.lease_transitions.unwrap_or(0) + i32::from(!held_by_us);
        let acquired = match current.acquire_time {
            Some(acquired) if held_by_us => acquired,
            _ => now.clone(),
        };
        lease.spec = Some(self.spec(acquired, now, transitions));
        let sent = Instant::now();
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Attempt::Held(sent)),
            // Someone else wrote first; when taking, that someone leads. When renewing, the
            // next read tells (the lease may only have been relabelled).
            Err(kube::Error::Api(e)) if e.code == 409 && take => Ok(Attempt::HeldBy(holder)),
            Err(e) => Err(e),
        }
    }

    /// Leads without a lease, for as long as the process runs: the lease may not be used.
    fn alone(self, refused: &kube::Error) -> Leader {
        warn!(
            lease = %self.name,
            refused = %api_message(refused),
            "leader election is off: running as the only replica; to run several, grant get, create and update on coordination.k8s.io leases (this Lease) in this namespace"
        );
        self.renewed.send_replace(Lead::Alone);
        Leader {
            election: Arc::new(self),
            renewing: tokio::spawn(std::future::pending()),
        }
    }

    /// Records what the lease says now; returns how long it has said so, as seen here.
    fn observe(&self, spec: &LeaseSpec) -> Duration {
        let mut observed = self.observed.lock().expect("lease observation lock");
        let same = observed
            .as_ref()
            .is_some_and(|o| o.holder == spec.holder_identity && o.renew_time == spec.renew_time);
        if !same {
            *observed = Some(Observed {
                holder: spec.holder_identity.clone(),
                renew_time: spec.renew_time.clone(),
                at: Instant::now(),
            });
        }
        observed.as_ref().map_or(Duration::ZERO, |o| o.at.elapsed())
    }

    fn spec(&self, acquired: MicroTime, renewed: MicroTime, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            acquire_time: Some(acquired),
            renew_time: Some(renewed),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }
}

/// This replica leads: the lease is renewed in the background until [`Leader::lost`].
#[derive(Debug)]
pub struct Leader {
    election: Arc<LeaderElection>,
    renewing: JoinHandle<LeaseLost>,
}

impl Leader {
    pub fn leadership(&self) -> Leadership {
        self.election.leadership()
    }

    /// Resolves when the lease is lost; call once.
    pub async fn lost(&mut self) -> LeaseLost {
        (&mut self.renewing).await.unwrap_or_else(|e| LeaseLost {
            lease: self.election.name.clone(),
            why: format!("the renewing task ended: {e}"),
        })
    }

    /// Stops renewing and gives the lease up at shutdown, so that another replica takes
    /// over at once instead of after [`LEASE_DURATION`].
    pub async fn release(self) {
        self.renewing.abort();
        if self.election.renewed.send_replace(Lead::No) == Lead::Alone {
            return;
        }
        let election = &self.election;
        let release = async {
            let mut lease = election.api.get(&election.name).await?;
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(&election.identity) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.renew_time = None;
            election
                .api
                .replace(&election.name, &PostParams::default(), &lease)
                .await
                .map(drop)
        };
        match timeout(CALL_TIMEOUT, release).await {
            Ok(Ok(())) => info!(lease = %election.name, "leader lease released"),
            Ok(Err(e)) => {
                warn!(lease = %election.name, error = %api_message(&e), "cannot release the leader lease")
            }
            Err(_) => warn!(lease = %election.name, "no answer to the release of the leader lease"),
        }
    }
}

fn forbidden(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 403)
}

const UNREACHABLE: &str = "check the API server's address (KUBECONFIG or the in-cluster configuration) and that it is reachable; retrying";

/// What an operator can do about a failed call to the API server, for the log line that
/// reports it.
pub fn remedy(error: &kube::Error) -> &'static str {
    match error {
        kube::Error::Api(status) if status.code == 403 => {
            "grant the controller's ServiceAccount the verb on the resource named in the error (Role/ClusterRole); retrying"
        }
        kube::Error::Api(status) if status.code == 401 => {
            "the API server refused the credentials: check the ServiceAccount token or KUBECONFIG; retrying"
        }
        kube::Error::Api(_) => "the API server refused the call; retrying",
        _ => UNREACHABLE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn leadership_ends_by_itself_at_the_renew_deadline() {
        let renewed = watch::Sender::new(Lead::No);
        let leadership = Leadership(renewed.subscribe());
        assert!(!leadership.is_leading(), "not before the lease is won");
        renewed.send_replace(Lead::Renewed(Instant::now()));
        tokio::time::advance(RENEW_DEADLINE - Duration::from_millis(1)).await;
        assert!(leadership.is_leading());
        // No renewal since: no word from the renewing task is needed to stop leading.
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!leadership.is_leading());
        renewed.send_replace(Lead::Renewed(Instant::now()));
        assert!(leadership.is_leading(), "a renewal extends it");
        renewed.send_replace(Lead::Alone);
        tokio::time::advance(LEASE_DURATION * 10).await;
        assert!(
            leadership.is_leading(),
            "without a lease, for as long as it runs"
        );
    }
}
