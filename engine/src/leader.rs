//! Leader election on a `coordination.k8s.io` Lease, so several replicas can run and one
//! reconciles: the others wait, and take over when the leader stops renewing.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tracing::{info, warn};

/// One candidate for the lease `namespace/name`.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
}

/// The lease could not be renewed in time: another replica may lead now.
#[derive(Debug, thiserror::Error)]
#[error("lost the leader lease {lease}: it could not be renewed for {seconds} s")]
pub struct LeaseLost {
    pub lease: String,
    pub seconds: u64,
}

impl LeaderElection {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&self) {
        let mut announced = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    info!(lease = %self.name, identity = %self.identity, "became the leader");
                    return;
                }
                Ok(false) if !announced => {
                    info!(lease = %self.name, "another replica leads; waiting for the lease");
                    announced = true;
                }
                Ok(false) => {}
                Err(e) => warn!(lease = %self.name, error = %e, "cannot read the leader lease"),
            }
            tokio::time::sleep(self.lease_duration / 5).await;
        }
    }

    /// Renews the lease until it cannot be renewed within its duration; then returns.
    pub async fn hold(&self) -> LeaseLost {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.lease_duration / 3).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => break,
                Err(e) => warn!(lease = %self.name, error = %e, "cannot renew the leader lease"),
            }
            if last_renewed.elapsed() > self.lease_duration {
                break;
            }
        }
        LeaseLost {
            lease: self.name.clone(),
            seconds: self.lease_duration.as_secs(),
        }
    }

    /// Gives the lease up at shutdown so that another replica takes over at once.
    pub async fn release(&self) {
        let Ok(mut lease) = self.api.get(&self.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() == Some(&self.identity) {
            spec.holder_identity = None;
            spec.renew_time = None;
            if let Err(e) = self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
            {
                warn!(lease = %self.name, error = %e, "cannot release the leader lease");
            }
        }
    }

    /// One attempt: true when this replica holds the lease afterwards. Writes are guarded
    /// by resourceVersion, so two replicas racing cannot both win.
    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now.clone(), now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let current = lease.spec.clone().unwrap_or_default();
        let held_by_us = current.holder_identity.as_deref() == Some(&self.identity);
        let expired = match (&current.renew_time, current.lease_duration_seconds) {
            (Some(renewed), Some(seconds)) => {
                renewed.0 + SignedDuration::from_secs(seconds.into()) < now.0
            }
            _ => true,
        };
        let vacant = current
            .holder_identity
            .as_deref()
            .unwrap_or_default()
            .is_empty();
        if !held_by_us && !expired && !vacant {
            return Ok(false);
        }
        let transitions = current.lease_transitions.unwrap_or(0) + i32::from(!held_by_us);
        let acquired = if held_by_us {
            current.acquire_time.unwrap_or_else(|| now.clone())
        } else {
            now.clone()
        };
        lease.spec = Some(self.spec(acquired, now, transitions));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, acquired: MicroTime, renewed: MicroTime, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease_duration.as_secs() as i32),
            acquire_time: Some(acquired),
            renew_time: Some(renewed),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }
}
