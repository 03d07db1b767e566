//! Arbitrary text parsed and run as a Go template by `sealsync-template`, with sprig's
//! functions, under a small budget, over values that carry a marker. The first byte picks
//! the options (missing keys as errors, `<%`/`%>` delimiters); the rest is the template.
//!
//! Must never panic, hang (libFuzzer's `-timeout` catches a budget that fails to stop a
//! run) or allocate without bound (output goes to a writer capped at 1 MiB, as the api's
//! is). Beyond that it checks that no error shows a value: a message may quote the
//! template's text, so the check applies to templates that do not contain the marker.

#![no_main]

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sealsync_template::{Delimiters, Functions, Limits, MissingKey, Options, Template, Value};

const MARKER: &str = "s3cr3t";
const MAX_OUTPUT: usize = 1 << 20;

/// A writer that refuses to hold more than `MAX_OUTPUT` bytes.
struct Capped(usize);

impl io::Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0 += bytes.len();
        if self.0 > MAX_OUTPUT {
            return Err(io::Error::other("output cap"));
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn values() -> Value {
    Value::Map(HashMap::from([
        ("user".to_string(), Value::from(format!("{MARKER}-user"))),
        ("password".to_string(), Value::from(format!("{MARKER}-pass"))),
        ("n".to_string(), Value::from("12")),
        ("empty".to_string(), Value::from("")),
    ]))
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, text)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(text);
    let options = Options {
        functions: Functions::sprig(),
        missing_key: if choice & 1 == 0 {
            MissingKey::Default
        } else {
            MissingKey::Error
        },
        delimiters: if choice & 2 == 0 {
            Delimiters::default()
        } else {
            Delimiters::new("<%", "%>").expect("valid delimiters")
        },
        limits: Limits {
            max_steps: 20_000,
            deadline: Duration::from_millis(200),
        },
    };
    let message = match Template::parse(&text, options) {
        Err(e) => e.to_string(),
        Ok(template) => match template.execute(&mut Capped(0), &values()) {
            Ok(()) => return,
            Err(e) => e.to_string(),
        },
    };
    if !text.contains(MARKER) {
        assert!(!message.contains(MARKER), "an error shows a value: {message}");
    }
});
