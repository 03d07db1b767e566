//! Test harness of sealsync: real components started on loopback for integration tests.
//!
//! A Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager), moto for AWS
//! Secrets Manager, a Vault dev server, the upstream kubeseal and External Secrets Operator,
//! each built by `tests/harness/build.sh` and stopped (with its data removed) when dropped;
//! containers of sealsync's own image (controller/image/) run with podman.

mod bins;
mod cluster;
mod controller;
mod eso;
mod events;
mod image;
mod moto;
mod netns;
mod pki;
mod process;
pub mod schema;
pub mod stats;
mod upstream;
mod vault;

pub use bins::{Component, binary, project_binary};
pub use cluster::TestCluster;
pub use controller::{Sealing, SealingController, SealsyncController, seal_and_wait_unsealed};
pub use eso::{UpstreamEso, upstream_eso_crds};
pub use events::events_about;
pub use image::{Container, controller_image, podman, podman_run};
pub use moto::{Moto, MotoCalls};
pub use netns::NetNs;
pub use process::{Process, free_port, http_get, http_post, run_ok, wait_for};
pub use upstream::{UpstreamController, install_upstream_chart_rbac, upstream_chart_command_line};
pub use vault::Vault;
