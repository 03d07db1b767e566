//! Network namespaces of the harness's own (iproute2 + veth): a process inside one has a
//! non-loopback address the API server accepts as a Service endpoint, so the service proxy
//! reaches it as it reaches a pod in a cluster. Needs root.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};

/// A network namespace linked to the host by a veth pair on a /30 of its own.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    host_interface: String,
    host_ip: Ipv4Addr,
    ip: Ipv4Addr,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl NetNs {
    /// Creates the namespace and its link; the host side gets `.1`, the namespace `.2`.
    pub fn create() -> anyhow::Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let unique = (std::process::id() << 6 | COUNTER.fetch_add(1, Ordering::Relaxed)) & 0x3fff;
        let name = format!("sst{unique:x}");
        let block = unique * 4;
        let host_ip = Ipv4Addr::new(10, 213, (block >> 8) as u8, (block & 0xff) as u8 + 1);
        let ns_ip = Ipv4Addr::new(10, 213, (block >> 8) as u8, (block & 0xff) as u8 + 2);
        let this = Self {
            host_interface: format!("{name}h"),
            name,
            host_ip,
            ip: ns_ip,
        };
        let peer = format!("{}n", this.name);
        ip(&["netns", "add", &this.name]).context("creating a network namespace needs root")?;
        ip(&[
            "link",
            "add",
            &this.host_interface,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ])?;
        ip(&["link", "set", &peer, "netns", &this.name])?;
        ip(&[
            "addr",
            "add",
            &format!("{host_ip}/30"),
            "dev",
            &this.host_interface,
        ])?;
        ip(&["link", "set", &this.host_interface, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &this.name, "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["addr", "add", &format!("{ns_ip}/30"), "dev", &peer])?;
        inside(&["link", "set", &peer, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        inside(&["route", "add", "default", "via", &host_ip.to_string()])?;
        Ok(this)
    }

    /// The namespace's own address, reachable from the host.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The host's address as seen from inside the namespace.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// Serves the files under `root` over HTTP on `<namespace ip>:<port>` (a stand-in for a
    /// pod's web server), logging into `log_dir`.
    pub fn serve_files(
        &self,
        root: &std::path::Path,
        port: u16,
        log_dir: &std::path::Path,
    ) -> anyhow::Result<crate::Process> {
        crate::Process::spawn(
            "http-server",
            self.command("python3")
                .args([
                    "-m",
                    "http.server",
                    &port.to_string(),
                    "--bind",
                    &self.ip.to_string(),
                ])
                .current_dir(root),
            log_dir,
        )
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_interface]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}
