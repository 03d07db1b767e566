//! The controller's command line: upstream's flags, also from `SEALED_SECRETS_<FLAG>`.

use assert_cmd::Command;

#[test]
fn help_names_the_flags_and_their_environment_variables() {
    let output = Command::cargo_bin("sealsync-controller")
        .unwrap()
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for expected in [
        "--key-renew-period",
        "SEALED_SECRETS_KEY_RENEW_PERIOD",
        "--key-cutoff-time",
        "--listen-metrics-addr",
        "SEALED_SECRETS_MY_CN",
    ] {
        assert!(help.contains(expected), "{expected} missing from --help");
    }
}

#[test]
fn a_bad_value_from_the_environment_is_refused_by_name() {
    let output = Command::cargo_bin("sealsync-controller")
        .unwrap()
        .env("SEALED_SECRETS_KEY_CUTOFF_TIME", "yesterday")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("--key-cutoff-time"), "{stderr}");
    assert!(
        stderr.contains("Mon, 02 Jan 2026 15:04:05 -0700"),
        "{stderr}"
    );
}

#[test]
fn version_prints_upstreams_line_also_under_upstreams_command_name() {
    // Upstream's chart and manifests run `command: [controller]`.
    let dir = tempfile_dir();
    let controller = dir.join("controller");
    std::os::unix::fs::symlink(
        assert_cmd::cargo::cargo_bin("sealsync-controller"),
        &controller,
    )
    .unwrap();
    for args in [&["--version"][..], &["--version=true", "--update-status"]] {
        let output = Command::new(&controller).args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            format!("controller version: v{}\n", env!("CARGO_PKG_VERSION"))
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn variables_are_read_and_the_command_line_wins_over_them() {
    let run = |variable: &str, value: &str, args: &[&str]| {
        Command::cargo_bin("sealsync-controller")
            .unwrap()
            .env(variable, value)
            .arg("--version")
            .args(args)
            .output()
            .unwrap()
    };
    // A value only the parser can refuse shows that the variable is read.
    for (variable, flag) in [
        ("SEALED_SECRETS_RATE_LIMIT", "--rate-limit"),
        ("SEALED_SECRETS_SKIP_RECREATE", "--skip-recreate"),
        ("SEALED_SECRETS_KEY_ORDER_PRIORITY", "--key-order-priority"),
        ("SEALED_SECRETS_ROTATE_PERIOD", "--key-renew-period"),
    ] {
        let refused = run(variable, "0x", &[]);
        assert!(!refused.status.success(), "{variable} is not read");
        let stderr = String::from_utf8(refused.stderr).unwrap();
        assert!(stderr.contains(flag), "{stderr}");
    }
    for (variable, on_the_command_line) in [
        ("SEALED_SECRETS_RATE_LIMIT", "--rate-limit=3"),
        ("SEALED_SECRETS_SKIP_RECREATE", "--skip-recreate"),
    ] {
        let accepted = run(variable, "0x", &[on_the_command_line]);
        assert!(
            accepted.status.success(),
            "{on_the_command_line} does not win over {variable}: {}",
            String::from_utf8_lossy(&accepted.stderr)
        );
    }
}

#[test]
fn an_unknown_flag_is_still_refused() {
    let output = Command::cargo_bin("sealsync-controller")
        .unwrap()
        .args(["--version", "--no-such-flag"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8(output.stderr)
            .unwrap()
            .contains("--no-such-flag")
    );
}

/// A fresh directory under the target dir (no tempfile dependency for one symlink).
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
