//! Logs of the controllers: human-readable or JSON lines, one tracing span per reconciled
//! object; the level as the caller says (e.g. `--log-level`), else `RUST_LOG`, else `info`.

use tracing::{Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
use tracing_subscriber::util::SubscriberInitExt;

/// How logs are written.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSettings {
    /// One JSON object per line.
    pub json: bool,
    /// Lowest level written; `None`: as `RUST_LOG` says, else `info`.
    pub level: Option<Level>,
    /// INFO and DEBUG lines to stdout, WARN and ERROR to stderr (else all to stderr), as
    /// upstream's `--log-info-stdout`.
    pub info_to_stdout: bool,
}

/// Installs the global log subscriber; call once from `main`.
pub fn init_logging(settings: LogSettings) {
    let rust_log = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    subscriber(
        settings,
        rust_log.as_deref(),
        std::io::stdout,
        std::io::stderr,
    )
    .init();
}

fn subscriber<Out, Err>(
    settings: LogSettings,
    rust_log: Option<&str>,
    stdout: Out,
    stderr: Err,
) -> Box<dyn Subscriber + Send + Sync>
where
    Out: for<'a> MakeWriter<'a> + Send + Sync + 'static,
    Err: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = match (settings.level, rust_log) {
        (Some(level), _) => EnvFilter::new(level.as_str()),
        (None, Some(directives)) => {
            EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"))
        }
        (None, None) => EnvFilter::new("info"),
    };
    // kube's watcher warns at every retry of a refused list, with the whole status; the
    // engine says it once, with what to grant. RUST_LOG naming kube_runtime decides itself.
    let filter = if rust_log.is_some_and(|d| d.contains("kube_runtime")) {
        filter
    } else {
        filter.add_directive("kube_runtime::watcher=error".parse().expect("a directive"))
    };
    let writer = if settings.info_to_stdout {
        BoxMakeWriter::new(stderr.with_max_level(Level::WARN).or_else(stdout))
    } else {
        BoxMakeWriter::new(stderr)
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false);
    if settings.json {
        Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .finish(),
        )
    } else {
        Box::new(builder.finish())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// (stdout, stderr) after logging one line per level.
    fn log_each_level(settings: LogSettings, rust_log: Option<&str>) -> (String, String) {
        let (stdout, stderr) = (Buffer::default(), Buffer::default());
        let (out, err) = (stdout.clone(), stderr.clone());
        let subscriber = subscriber(settings, rust_log, move || out.clone(), move || err.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!("debug line");
            tracing::info!("info line");
            tracing::warn!("warn line");
            tracing::error!("error line");
        });
        (stdout.text(), stderr.text())
    }

    #[test]
    fn everything_goes_to_stderr_at_info_by_default() {
        let (stdout, stderr) = log_each_level(LogSettings::default(), None);
        assert_eq!(stdout, "");
        assert!(!stderr.contains("debug line"));
        for line in ["info line", "warn line", "error line"] {
            assert!(stderr.contains(line), "{line} missing: {stderr}");
        }
    }

    #[test]
    fn info_to_stdout_splits_by_level() {
        let settings = LogSettings {
            info_to_stdout: true,
            ..LogSettings::default()
        };
        let (stdout, stderr) = log_each_level(settings, None);
        assert!(
            stdout.contains("info line") && !stdout.contains("warn line"),
            "{stdout}"
        );
        assert!(
            stderr.contains("warn line") && stderr.contains("error line"),
            "{stderr}"
        );
        assert!(!stderr.contains("info line"), "{stderr}");
    }

    #[test]
    fn the_level_setting_wins_over_rust_log() {
        let settings = LogSettings {
            level: Some(Level::ERROR),
            ..LogSettings::default()
        };
        let (_, stderr) = log_each_level(settings, Some("debug"));
        assert!(stderr.contains("error line"));
        assert!(
            !stderr.contains("warn line") && !stderr.contains("info line"),
            "{stderr}"
        );
        let (_, stderr) = log_each_level(LogSettings::default(), Some("debug"));
        assert!(
            stderr.contains("debug line"),
            "RUST_LOG without a level setting"
        );
    }

    #[test]
    fn json_lines_are_json_objects() {
        let settings = LogSettings {
            json: true,
            ..LogSettings::default()
        };
        let (_, stderr) = log_each_level(settings, None);
        let first: serde_json::Value =
            serde_json::from_str(stderr.lines().next().expect("a line")).unwrap();
        assert_eq!(first["message"], "info line");
        assert_eq!(first["level"], "INFO");
    }
}
