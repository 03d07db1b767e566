//! The container image of `sealsync-controller` (controller/image/), built once per test
//! process, and containers of it run with podman on the host network, as in this sandbox
//! only runc, cgroupfs and lowered ulimits work.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::Context;

use crate::bins::repo_root;
use crate::process::{Process, run_ok};

/// The image reference: `SEALSYNC_IMAGE` when set (an image CI already built), else the one
/// `controller/image/build.sh` builds from this checkout (tag `test`).
pub fn controller_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        if let Ok(image) = std::env::var("SEALSYNC_IMAGE") {
            run_ok(Command::new("podman").args(["image", "exists", &image]));
            return image;
        }
        let out = run_ok(
            Command::new("bash")
                .arg(repo_root().join("controller/image/build.sh"))
                .arg("test"),
        );
        let stdout = String::from_utf8(out.stdout).expect("build.sh prints UTF-8");
        stdout
            .lines()
            .last()
            .expect("build.sh prints the image reference last")
            .to_string()
    })
}

/// `podman` with the global options this sandbox needs.
pub fn podman() -> Command {
    let mut command = Command::new("podman");
    command.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"]);
    command
}

/// `podman run --rm` with the ulimits this sandbox allows, a read-only root filesystem and
/// nothing writable.
pub fn podman_run() -> Command {
    let mut command = podman();
    command
        .args(["run", "--rm"])
        .args([
            "--ulimit",
            "nofile=4096:4096",
            "--ulimit",
            "nproc=4096:4096",
        ])
        .args(["--read-only", "--read-only-tmpfs=false"]);
    command
}

/// A running container, removed when dropped (killing `podman run` alone leaves it running).
#[derive(Debug)]
pub struct Container {
    name: String,
    process: Process,
}

impl Container {
    /// [`podman_run`] of `image` on the host network; `options` go before the image (mounts, user, entrypoint), `args`
    /// after it. Its output is logged in `log_dir`.
    pub fn run(
        name: &str,
        options: &[&str],
        image: &str,
        args: &[&str],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let name = format!("{name}-{}", std::process::id());
        let mut command = podman_run();
        command
            .args(["--name", &name, "--network", "host"])
            .args(options)
            .arg(image)
            .args(args);
        let process = Process::spawn(&name, &mut command, log_dir)?;
        Ok(Self { name, process })
    }

    /// The uid the container's main process runs as, from the host's /proc.
    pub fn uid(&self) -> anyhow::Result<u32> {
        let out = run_ok(podman().args(["inspect", "--format", "{{.State.Pid}}", &self.name]));
        let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no Uid in /proc/{pid}/status of container {}", self.name))
    }

    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman()
            .args(["rm", "--force", "--time", "0", &self.name])
            .output();
    }
}
