//! Rendering of a SealedSecret's `spec.template.data`: each entry is a Go template run over
//! the unsealed values, and its output becomes that key's value in the generated Secret.

use std::collections::{BTreeMap, HashMap};
use std::io;

use sealsync_crypto::SecretBytes;
use sealsync_template::{Functions, Options, Template, Value};
use zeroize::Zeroizing;

use crate::ApiError;

/// Most bytes a template may produce: a Secret holds at most 1 MiB, and a template must
/// not make the controller allocate without bound.
const MAX_OUTPUT_BYTES: usize = 1 << 20;

/// Renders each template of `templates` over `values`, as upstream does: `.key` and
/// `index . "key"` are a value as a Go string, and Go's builtins and common sprig functions
/// apply. Each template runs under the default budget of `sealsync_template::Limits`.
///
/// A value that is not UTF-8 text is a byte string, as in Go: printed, it is written byte
/// for byte, and functions that read bytes (`b64enc`, `sha256sum`, `pkcs12key`) take it;
/// ones that need text fail naming themselves. The output is bytes too. Errors name
/// `object` and the template's key, never a value (the template crate's errors describe
/// values by kind only).
pub fn render_template_data(
    object: &str,
    templates: &BTreeMap<String, String>,
    values: &BTreeMap<String, SecretBytes>,
) -> Result<BTreeMap<String, SecretBytes>, ApiError> {
    let options = Options {
        functions: Functions::sprig(),
        ..Options::default()
    };
    render_templates(
        &format!("SealedSecret {object}"),
        templates,
        values,
        &options,
    )
}

/// [`render_template_data`] with other template options (functions, `missingkey`,
/// delimiters), as ExternalSecret templates have; `object` is the kind and name errors
/// give.
pub fn render_templates(
    object: &str,
    templates: &BTreeMap<String, String>,
    values: &BTreeMap<String, SecretBytes>,
    options: &Options,
) -> Result<BTreeMap<String, SecretBytes>, ApiError> {
    if templates.is_empty() {
        return Ok(BTreeMap::new());
    }
    let context = context_of(values);
    templates
        .iter()
        .map(|(key, text)| {
            render(text, &context, options)
                .map(|rendered| (key.clone(), rendered))
                .map_err(|problem| ApiError::Template {
                    object: object.to_string(),
                    key: key.clone(),
                    problem,
                })
        })
        .collect()
}

/// The templates' `.`: a map of key to string, text or bytes. The executor clones the
/// copies as it runs, so they cannot be wiped; the rendered output can.
fn context_of(values: &BTreeMap<String, SecretBytes>) -> Value {
    let map: HashMap<String, Value> = values
        .iter()
        .map(|(key, value)| (key.clone(), Value::from_bytes(value.expose().to_vec())))
        .collect();
    Value::Map(map)
}

fn render(text: &str, context: &Value, options: &Options) -> Result<SecretBytes, String> {
    let template = Template::parse(text, options.clone()).map_err(|e| e.to_string())?;
    let mut rendered = Output::default();
    template
        .execute(&mut rendered, context)
        .map_err(|e| e.to_string())?;
    Ok(SecretBytes::from(rendered.0))
}

/// Where a template's output goes: wiped on drop (also each buffer it outgrows), and
/// refusing to grow past what a Secret can hold, whatever loops the template runs.
#[derive(Default)]
struct Output(Zeroizing<Vec<u8>>);

impl io::Write for Output {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let needed = self.0.len() + bytes.len();
        if needed > MAX_OUTPUT_BYTES {
            return Err(io::Error::other(format!(
                "the output would exceed {MAX_OUTPUT_BYTES} bytes, the most a Secret holds"
            )));
        }
        if needed > self.0.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(needed.max(2 * self.0.capacity())));
            bigger.extend_from_slice(&self.0);
            self.0 = bigger;
        }
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBJECT: &str = "prod/db";

    fn values() -> BTreeMap<String, SecretBytes> {
        BTreeMap::from([
            ("username".into(), SecretBytes::from(b"admin".to_vec())),
            ("password".into(), SecretBytes::from(b"hunter2".to_vec())),
            ("api-key".into(), SecretBytes::from(b"k-123".to_vec())),
            (
                "keystore".into(),
                SecretBytes::from(vec![0xfe, 0xed, 0xfe, 0xed]),
            ),
        ])
    }

    fn render_bytes(text: &str) -> Result<Vec<u8>, ApiError> {
        let templates = BTreeMap::from([("out".to_string(), text.to_string())]);
        let rendered = render_template_data(OBJECT, &templates, &values())?;
        Ok(rendered["out"].expose().to_vec())
    }

    fn render_one(text: &str) -> Result<String, ApiError> {
        render_bytes(text).map(|out| String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_realistic_config_file_renders() {
        let text = "database:\n  user: {{ .username | quote }}\n  password: {{ .password | b64enc }}\n  \
                    api: {{ index . \"api-key\" | upper }}\n{{- if hasPrefix \"admin\" .username }}\n  \
                    role: {{ .role | default \"owner\" }}\n{{- end }}\n  \
                    checksum: {{ .password | sha256sum | trunc 8 }}\n";
        assert_eq!(
            render_one(text).unwrap(),
            "database:\n  user: \"admin\"\n  password: aHVudGVyMg==\n  api: K-123\n  \
             role: owner\n  checksum: f52fbd32\n"
        );
    }

    #[test]
    fn every_template_renders_and_none_means_nothing_to_do() {
        let templates = BTreeMap::from([
            ("a".to_string(), "{{ .username }}".to_string()),
            ("b".to_string(), "plain".to_string()),
        ]);
        let rendered = render_template_data(OBJECT, &templates, &values()).unwrap();
        assert_eq!(rendered["a"].expose(), b"admin");
        assert_eq!(rendered["b"].expose(), b"plain");
        let none = render_template_data(OBJECT, &BTreeMap::new(), &values()).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn a_missing_key_prints_no_value_as_go_does() {
        assert_eq!(render_one("{{ .nope }}").unwrap(), "<no value>");
    }

    #[test]
    fn binary_values_are_go_strings_of_their_bytes() {
        let keystore = [0xfe, 0xed, 0xfe, 0xed];
        assert_eq!(render_bytes("{{ .keystore }}").unwrap(), keystore);
        assert_eq!(
            render_bytes("{{ index . \"keystore\" | b64enc | b64dec }}").unwrap(),
            keystore
        );
        assert_eq!(
            render_one("{{ index . \"keystore\" | b64enc }}").unwrap(),
            "/u3+7Q=="
        );
        assert_eq!(
            render_bytes("{{ .keystore }}-{{ .username }}").unwrap(),
            b"\xfe\xed\xfe\xed-admin"
        );
        assert_eq!(render_one("{{ len .keystore }}").unwrap(), "4");
        assert_eq!(
            render_one("{{ keys . | join \",\" }}").unwrap(),
            "api-key,keystore,password,username"
        );
        let msg = render_one("{{ .keystore | upper }}")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("upper: argument 1 is binary data, not UTF-8 text"),
            "{msg}"
        );
    }

    #[test]
    fn b64dec_of_a_bundle_feeds_the_pkcs12_functions() {
        use base64::Engine as _;
        let bundle = include_bytes!("../../template/testdata/pki/nopass.p12");
        let values = BTreeMap::from([
            (
                "bundle".to_string(),
                SecretBytes::from(
                    base64::engine::general_purpose::STANDARD
                        .encode(bundle)
                        .into_bytes(),
                ),
            ),
            ("p12".to_string(), SecretBytes::from(bundle.to_vec())),
        ]);
        let templates = BTreeMap::from([
            (
                "key".to_string(),
                "{{ .bundle | b64dec | pkcs12key }}".to_string(),
            ),
            ("certs".to_string(), "{{ .p12 | pkcs12cert }}".to_string()),
            ("raw".to_string(), "{{ .bundle | b64dec }}".to_string()),
        ]);
        let options = Options {
            functions: Functions::sprig().with(sealsync_template::pki::FUNCTIONS),
            ..Options::default()
        };
        let rendered = render_templates(OBJECT, &templates, &values, &options).unwrap();
        assert!(
            rendered["key"]
                .expose()
                .starts_with(b"-----BEGIN PRIVATE KEY-----\n")
        );
        let certs = std::str::from_utf8(rendered["certs"].expose()).unwrap();
        assert_eq!(certs.matches("-----BEGIN CERTIFICATE-----\n").count(), 3);
        assert_eq!(rendered["raw"].expose(), bundle);
    }

    #[test]
    fn ranging_over_all_values_visits_keys_in_order() {
        let text = "{{ range $k, $v := . }}{{ $k }}={{ $v }};{{ end }}";
        let sorted = b"api-key=k-123;keystore=\xfe\xed\xfe\xed;password=hunter2;username=admin;";
        assert_eq!(render_bytes(text).unwrap(), sorted);
        let text = "{{ range $k := keys . }}{{ $k }}={{ index $ $k }};{{ end }}";
        assert_eq!(render_bytes(text).unwrap(), sorted);
    }

    /// Nested ranges that write nothing never reach the output cap; the budget stops them.
    #[test]
    fn a_template_that_runs_too_long_is_stopped_by_its_budget() {
        let depth = 12;
        let text = format!(
            "{}{}",
            "{{ range $k := keys $ }}".repeat(depth),
            "{{ end }}".repeat(depth)
        );
        let msg = render_one(&text).unwrap_err().to_string();
        assert_eq!(
            msg,
            "cannot render template.data key \"out\" of SealedSecret prod/db: exceeded its \
             execution budget (100000 steps / 500 ms); simplify the template"
        );
    }

    #[test]
    fn output_and_printf_padding_are_bounded() {
        let text = "{{ range $i := keys . }}{{ repeat 1048576 \"x\" }}{{ end }}";
        let msg = render_one(text).unwrap_err().to_string();
        assert!(msg.contains("exceed 1048576 bytes"), "{msg}");
        for text in [
            "{{ printf \"%0999999999d\" 1 }}",
            "{{ printf \"%.9999f\" 1.5 }}",
        ] {
            let msg = render_one(text).unwrap_err().to_string();
            assert!(msg.contains("printf: widths and precisions"), "{msg}");
        }
        assert_eq!(
            render_one("{{ printf \"%5d|%-3s|%.2f\" 42 \"a\" 1.5 }}").unwrap(),
            "   42|a  |1.50"
        );
    }

    #[test]
    fn functions_that_reach_outside_are_absent() {
        for name in ["env", "expandenv", "getHostByName"] {
            let msg = render_one(&format!("{{{{ {name} \"HOME\" }}}}"))
                .unwrap_err()
                .to_string();
            assert!(msg.contains(name), "{msg}");
        }
    }

    #[test]
    fn errors_name_the_object_key_and_place() {
        let msg = render_one("ok\n{{ .username ").unwrap_err().to_string();
        assert!(
            msg.contains("template.data key \"out\" of SealedSecret prod/db"),
            "{msg}"
        );
        assert!(msg.ends_with("line 2: unclosed action"), "{msg}");
        let msg = render_one("{{ if .username }}\n{{ nofunc }}")
            .unwrap_err()
            .to_string();
        assert!(
            msg.ends_with("prod/db: line 2: function nofunc not defined"),
            "{msg}"
        );
    }

    /// gtmpl looped forever on the first and panicked on the second.
    #[test]
    fn text_that_tripped_gtmpl_is_handled() {
        assert!(render_one("{{ .username  ").is_err());
        assert_eq!(render_one("café {{- .username }}").unwrap(), "caféadmin");
    }

    #[test]
    fn no_error_ever_shows_a_value() {
        let failing = [
            "{{ lt .password 1 }}",
            "{{ ge .password 1 }}",
            "{{ index .password 1 }}",
            "{{ len 3 | lt .password }}",
            "{{ printf \"%d\" .password }}",
            "{{ range .password }}{{ end }}",
            "{{ .password.field }}",
            "{{ call .password }}",
            "{{ b64dec .password }}",
            "{{ upper . }}",
            "{{ indent .password .password }}",
            "{{ repeat 2000000 .password }}",
            "{{ .password | trunc }}",
            "{{ default 1 2 .password }}",
            "{{ toJson .password .username }}",
            "{{ template \"x\" .password }}",
            "{{ .password | nosuchfunction }}",
            "{{ .password ",
            "{{ .keystore | upper }}",
        ];
        for text in failing {
            let err = render_one(text).expect_err(text);
            let msg = err.to_string();
            assert!(
                !msg.contains("hunter2") && !msg.contains("admin"),
                "{text}: {msg}"
            );
            assert!(!format!("{err:?}").contains("hunter2"), "{text}");
            assert!(msg.contains("prod/db"), "{msg}");
        }
    }

    #[test]
    fn our_functions_explain_themselves() {
        let msg = render_one("{{ b64dec .password }}")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("b64dec: the argument is not valid base64"),
            "{msg}"
        );
        let msg = render_one("{{ .nope | upper }}").unwrap_err().to_string();
        assert!(msg.contains("upper: argument 1 has no value"), "{msg}");
    }

    proptest::proptest! {
        /// Whatever the text, rendering ends with output or an error: gtmpl hung or
        /// panicked on some of these.
        #[test]
        fn any_text_renders_or_fails_cleanly(parts in proptest::collection::vec(
            proptest::sample::select(vec![
                "{{", "}}", "{{- ", " -}}", "/*", "*/", " ", "\n", ".", ".username", "$", ":=",
                "\"", "`", "'", "\\", "|", "(", ")", "-", "1", "é", "{", "}", "range ", "if ",
                "end", "else", "with ", "define \"t\"", "template \"t\"", "printf ", "upper ",
                "default ", "index ", "keys ", "x", "\\x4", "\\u12", "\\U", "\\n", "'\\x41'",
            ]),
            0..24,
        )) {
            let _ = render_one(&parts.concat());
        }
    }
}
