//! moto in server mode: AWS Secrets Manager on loopback.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use tempfile::TempDir;

use crate::bins::{Component, binary};
use crate::process::{Process, free_port, http_get, wait_for};

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

/// The requests moto received, from its own recorder (`/moto-api/recorder/*`: one JSON line
/// per request with its headers, appended to a file in moto's folder), from when it is
/// started.
#[derive(Debug)]
pub struct MotoCalls {
    addr: SocketAddrV4,
}

impl MotoCalls {
    pub fn start(moto: &Moto) -> anyhow::Result<Self> {
        let port = moto
            .endpoint()
            .rsplit(':')
            .next()
            .context("moto's endpoint has a port")?
            .parse()?;
        let calls = Self {
            addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
        };
        http_get(calls.addr, "/moto-api/recorder/reset-recording")?;
        http_get(calls.addr, "/moto-api/recorder/start-recording")?;
        Ok(calls)
    }

    fn recording(&self) -> anyhow::Result<String> {
        http_get(self.addr, "/moto-api/recorder/download-recording")
    }

    /// Requests so far.
    pub fn total(&self) -> anyhow::Result<u64> {
        Ok(self.recording()?.lines().count() as u64)
    }

    /// Requests so far by AWS operation (the `X-Amz-Target` header).
    pub fn by_operation(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let mut counts = BTreeMap::new();
        for line in self.recording()?.lines() {
            let entry: Value = serde_json::from_str(line)?;
            let operation = entry["headers"]
                .as_object()
                .and_then(|headers| {
                    headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-target"))
                })
                .and_then(|(_, v)| v.as_str())
                .map_or("(no X-Amz-Target)", |t| {
                    t.rsplit('.').next().unwrap_or_default()
                })
                .to_string();
            *counts.entry(operation).or_insert(0) += 1;
        }
        Ok(counts)
    }
}
