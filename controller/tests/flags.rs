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
