//! A Vault dev server on loopback with KV v1 and v2 mounts, AppRole, Kubernetes and cert
//! auth, over plain HTTP or TLS.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use tempfile::TempDir;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

use crate::bins::{Component, binary};
use crate::process::{Process, free_port, wait_for};

/// A running Vault dev server (in memory). Dropping it stops the server.
#[derive(Debug)]
pub struct Vault {
    process: Process,
    address: String,
    /// The CA of the server's certificate, when it serves TLS.
    ca: Option<PathBuf>,
    _dir: TempDir,
}

impl Vault {
    pub const ROOT_TOKEN: &'static str = "sealsync-test-root";
    /// KV version 2 mount (the dev server's own).
    pub const KV2_MOUNT: &'static str = "secret";
    /// KV version 1 mount the harness adds.
    pub const KV1_MOUNT: &'static str = "kv1";

    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(false).await
    }

    /// The same over TLS (`-dev-tls`: a generated CA and server certificate, and client
    /// certificates requested, for cert auth and mTLS).
    pub async fn start_tls() -> anyhow::Result<Self> {
        Self::start_with(true).await
    }

    async fn start_with(tls: bool) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("sealsync-vault-")
            .tempdir()?;
        let port = free_port();
        let scheme = if tls { "https" } else { "http" };
        let address = format!("{scheme}://127.0.0.1:{port}");
        let mut command = Command::new(binary(Component::Vault, "SEALSYNC_VAULT"));
        command
            .args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .arg(format!("-dev-root-token-id={}", Self::ROOT_TOKEN))
            // No ~/.vault-token and no stray config from the user.
            .env("HOME", dir.path())
            .env("VAULT_ADDR", &address);
        let ca = tls.then(|| dir.path().join("vault-ca.pem"));
        if tls {
            command
                .arg("-dev-tls")
                .arg(format!("-dev-tls-cert-dir={}", dir.path().display()));
        }
        let mut process = Process::spawn("vault", &mut command, dir.path())?;
        let started = wait_for(
            "vault to write its CA",
            Duration::from_secs(60),
            Some(&mut process),
            || {
                let ca = ca.clone();
                async move { Ok(ca.is_none_or(|ca| ca.exists())) }
            },
        );
        started.await?;
        let mut vault = Self {
            process,
            address,
            ca,
            _dir: dir,
        };
        let probe = vault.client_with_settings(None)?;
        let probe = &probe;
        wait_for(
            "vault to be unsealed",
            Duration::from_secs(60),
            Some(&mut vault.process),
            move || async move {
                Ok(matches!(
                    vaultrs::sys::status(probe).await,
                    Ok(vaultrs::sys::ServerStatus::OK)
                ))
            },
        )
        .await?;
        vault.configure().await?;
        Ok(vault)
    }

    async fn configure(&self) -> anyhow::Result<()> {
        let client = self.client()?;
        let mut kv1 = vaultrs::api::sys::requests::EnableEngineRequest::builder();
        kv1.options(std::collections::HashMap::from([(
            "version".to_string(),
            "1".to_string(),
        )]));
        vaultrs::sys::mount::enable(&client, Self::KV1_MOUNT, "kv", Some(&mut kv1))
            .await
            .context("cannot mount KV v1")?;
        vaultrs::sys::auth::enable(&client, "approle", "approle", None)
            .await
            .context("cannot enable AppRole auth")?;
        vaultrs::sys::auth::enable(&client, "kubernetes", "kubernetes", None)
            .await
            .context("cannot enable Kubernetes auth")?;
        vaultrs::sys::auth::enable(&client, "cert", "cert", None)
            .await
            .context("cannot enable cert auth")?;
        Ok(())
    }

    /// `http://127.0.0.1:<port>`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A `vaultrs` client with the root token.
    pub fn client(&self) -> anyhow::Result<VaultClient> {
        self.client_with_token(Self::ROOT_TOKEN)
    }

    /// A `vaultrs` client with `token`.
    pub fn client_with_token(&self, token: &str) -> anyhow::Result<VaultClient> {
        self.client_with_settings(Some(token))
    }

    fn client_with_settings(&self, token: Option<&str>) -> anyhow::Result<VaultClient> {
        let mut settings = VaultClientSettingsBuilder::default();
        settings
            .address(&self.address)
            .ca_certs(self.ca.iter().map(|p| p.display().to_string()).collect());
        if let Some(token) = token {
            settings.token(token);
        }
        Ok(VaultClient::new(settings.build()?)?)
    }

    /// The CA (PEM) of a TLS server's certificate.
    pub fn ca_pem(&self) -> anyhow::Result<String> {
        let ca = self.ca.as_ref().context("this Vault does not serve TLS")?;
        Ok(std::fs::read_to_string(ca)?)
    }

    /// Creates AppRole `role` with `policies` and returns its role id and a secret id.
    pub async fn approle(&self, role: &str, policies: &[&str]) -> anyhow::Result<(String, String)> {
        let client = self.client()?;
        let mut options = vaultrs::api::auth::approle::requests::SetAppRoleRequest::builder();
        options.token_policies(policies.iter().map(|p| p.to_string()).collect::<Vec<_>>());
        vaultrs::auth::approle::role::set(&client, "approle", role, Some(&mut options)).await?;
        let role_id = vaultrs::auth::approle::role::read_id(&client, "approle", role)
            .await?
            .role_id;
        let secret_id =
            vaultrs::auth::approle::role::secret::generate(&client, "approle", role, None)
                .await?
                .secret_id;
        Ok((role_id, secret_id))
    }

    /// Writes an ACL policy.
    pub async fn policy(&self, name: &str, hcl: &str) -> anyhow::Result<()> {
        vaultrs::sys::policy::set(&self.client()?, name, hcl).await?;
        Ok(())
    }

    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}
