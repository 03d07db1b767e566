//! moto in server mode: AWS Secrets Manager on loopback.

use std::process::Command;
use std::time::Duration;

use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use tempfile::TempDir;

use crate::bins::{Component, binary};
use crate::process::{Process, free_port, wait_for};

/// A running moto server. Dropping it stops the server; its state is in memory only.
#[derive(Debug)]
pub struct Moto {
    process: Process,
    endpoint: String,
    _dir: TempDir,
}

impl Moto {
    pub const REGION: &'static str = "us-east-1";
    pub const ACCESS_KEY_ID: &'static str = "AKIDSEALSYNCTEST";
    pub const SECRET_ACCESS_KEY: &'static str = "sealsync-test-secret-access-key";

    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("sealsync-moto-")
            .tempdir()?;
        let port = free_port();
        let mut process = Process::spawn(
            "moto",
            Command::new(binary(Component::Moto, "SEALSYNC_MOTO_SERVER"))
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .current_dir(dir.path()),
            dir.path(),
        )?;
        let endpoint = format!("http://127.0.0.1:{port}");
        wait_for(
            "moto",
            Duration::from_secs(60),
            Some(&mut process),
            || async move {
                Ok(tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok())
            },
        )
        .await?;
        Ok(Self {
            process,
            endpoint,
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:<port>`, for endpoint overrides.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A real `aws-sdk-secretsmanager` client pointed at this server.
    pub fn client(&self) -> aws_sdk_secretsmanager::Client {
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(Region::new(Self::REGION))
            .credentials_provider(Credentials::new(
                Self::ACCESS_KEY_ID,
                Self::SECRET_ACCESS_KEY,
                None,
                None,
                "sealsync-tests",
            ))
            .build();
        aws_sdk_secretsmanager::Client::from_conf(config)
    }

    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}
