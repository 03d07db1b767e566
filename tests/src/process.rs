//! Child processes that are killed when dropped (also when a test panics), with their
//! output kept in a log file for failure messages.

use std::fs::File;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running child process of the harness.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `command`, its stdout and stderr going to `<log_dir>/<name>.log`.
    pub fn spawn(name: &str, command: &mut Command, log_dir: &Path) -> anyhow::Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let file =
            File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {name} ({command:?})"))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log,
        })
    }

    /// The file its output goes to.
    pub fn log_path(&self) -> PathBuf {
        self.log.clone()
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the process's output, for error messages.
    pub fn log_tail(&self) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(25)..].join("\n")
    }

    /// Fails if the process has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited with {status}:\n{}", self.name, self.log_tail());
        }
        Ok(())
    }

    /// How the process ended, if it has.
    pub fn exit_status(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Sends signal `name` (e.g. `USR1`).
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.id().to_string()])
            .status()?;
        anyhow::ensure!(sent.success(), "kill -{name} {} failed", self.id());
        Ok(())
    }

    /// Freezes the process (SIGSTOP), as a paused VM or a starved container would be.
    pub fn stop(&self) -> anyhow::Result<()> {
        self.signal("STOP")
    }

    /// Lets a frozen process go on (SIGCONT).
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("CONT")
    }

    /// Sends SIGTERM and waits up to `grace` for the exit; `None` if it did not exit.
    pub async fn terminate(
        &mut self,
        grace: Duration,
    ) -> anyhow::Result<Option<std::process::ExitStatus>> {
        self.signal("TERM")?;
        self.wait_exit(grace).await
    }

    /// Waits up to `timeout` for the process to exit by itself; `None` if it did not.
    pub async fn wait_exit(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.exit_status()? {
                return Ok(Some(status));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(None)
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a command to completion and panics with its stderr unless it succeeded.
pub fn run_ok(command: &mut Command) -> std::process::Output {
    let out = command.output().expect("the command starts");
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Ports the harness hands out: outside Linux's ephemeral range (`ip_local_port_range`,
/// 32768-60999 by default), so an outgoing connection of any process never takes a port
/// between `free_port` and the server's bind. Below the range where there is room, else
/// above it.
fn harness_ports() -> std::ops::Range<u32> {
    const WANTED: u32 = 12_000;
    const ENOUGH: u32 = 2_000;
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok();
    let bounds: Vec<u32> = range
        .iter()
        .flat_map(|text| text.split_whitespace())
        .filter_map(|n| n.parse().ok())
        .collect();
    let (low, high) = match bounds[..] {
        [low, high] => (low, high),
        _ => (32_768, 60_999),
    };
    if low >= 1_024 + ENOUGH {
        low.saturating_sub(WANTED).max(1_024)..low
    } else if high + ENOUGH < 65_536 {
        high + 1..65_536
    } else {
        // No room outside it: the default's place (an outgoing connection may then race).
        20_000..32_000
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago and that no other `free_port` call of
/// this test binary returned: each call takes the next port of a sequence that starts at a
/// place set by the process id, so parallel tests (and test binaries run one after another)
/// do not race for the same port. The sequence steps by two because a server may also bind
/// the port after its own (a Vault dev server's cluster listener does).
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static PORTS: std::sync::OnceLock<std::ops::Range<u32>> = std::sync::OnceLock::new();
    let ports = PORTS.get_or_init(harness_ports);
    let slots = (ports.end - ports.start) / 2;
    let start = std::process::id().wrapping_mul(397) % slots;
    let port = |n: u32| ports.start + 2 * ((start + n) % slots);
    (0..slots)
        .map(|_| port(NEXT.fetch_add(1, Ordering::Relaxed)))
        .filter_map(|port| u16::try_from(port).ok())
        .find(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("the loopback interface has free ports")
}

/// Polls `check` until it returns `Ok(true)` or `timeout` passes; `process`, if given, must
/// stay alive meanwhile. The last error, if any, is part of the timeout message.
pub async fn wait_for<F, Fut>(
    what: &str,
    timeout: Duration,
    mut process: Option<&mut Process>,
    mut check: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        if let Some(process) = process.as_deref_mut() {
            process.ensure_running()?;
        }
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() > deadline {
            let log = process.map(|p| p.log_tail()).unwrap_or_default();
            bail!("timed out after {timeout:?} waiting for {what}; last error: {last}\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A plain HTTP/1.0 GET of a harness process; the body when the status is 200.
/// Status code and body of one plain HTTP/1.0 `POST` of a JSON `body`.
pub fn http_post(
    addr: SocketAddrV4,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(timeout))?;
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response
        .split_whitespace()
        .nth(1)
        .context("malformed HTTP response")?
        .parse()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b);
    Ok((code, body.unwrap_or_default().to_string()))
}

pub fn http_get(addr: SocketAddrV4, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        bail!("GET {path}: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_string())
}
