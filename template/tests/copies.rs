//! Looking values up costs the value looked up, not a copy of the whole data: measured in
//! bytes allocated (dhat's counting allocator is process-wide, hence one test in its own
//! binary).

use std::collections::HashMap;
use std::time::Duration;

use sealsync_template::{Limits, Options, Template, Value};

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

const KEYS: usize = 256;
const VALUE_BYTES: usize = 4096;

#[test]
fn lookups_in_the_data_copy_only_what_they_find() {
    let _profiler = dhat::Profiler::builder()
        .testing()
        .trim_backtraces(Some(1))
        .build();
    let data = Value::Map(
        (0..KEYS)
            .map(|i| (format!("k{i:03}"), Value::from("v".repeat(VALUE_BYTES))))
            .collect::<HashMap<_, _>>(),
    );
    let data_bytes = KEYS * VALUE_BYTES;
    let each_key = |body: &str| format!("{{{{ range $k, $_ := . }}}}{body}{{{{ end }}}}");
    for text in [
        each_key("{{ index $ $k }}"),
        each_key("{{ $k | index $ }}"),
        each_key("{{ $.k000 }}"),
        each_key("{{ with $.k000 }}{{ . }}{{ end }}"),
        "{{ .k000 }}".repeat(KEYS),
        "{{ index . \"k000\" }}".repeat(KEYS),
    ] {
        // Counting allocations with backtraces is slow: time is not what is measured.
        let options = Options {
            limits: Limits {
                deadline: Duration::from_secs(300),
                ..Limits::default()
            },
            ..Options::builtins()
        };
        let template = Template::parse(&text, options).unwrap();
        let before = dhat::HeapStats::get().total_bytes;
        let rendered = template.render(&data).unwrap();
        let allocated = dhat::HeapStats::get().total_bytes - before;
        let shown = &text[..text.len().min(64)];
        assert_eq!(rendered.len(), data_bytes, "{shown}");
        // The output, a copy of the data to range over and each value copied a few times
        // (results, `$_`); a copy of the data per lookup would be KEYS times the data.
        assert!(
            allocated < 16 * data_bytes as u64,
            "{shown}: {allocated} bytes allocated for {data_bytes} bytes of data"
        );
    }
}
