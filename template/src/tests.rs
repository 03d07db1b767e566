use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::*;

fn values() -> Value {
    Value::Map(HashMap::from([
        ("user".to_string(), Value::from("admin")),
        ("password".to_string(), Value::from("hunter2")),
        ("b".to_string(), Value::from("2")),
        ("a".to_string(), Value::from("1")),
    ]))
}

fn render_with(text: &str, options: Options) -> Result<String, String> {
    let template = Template::parse(text, options).map_err(|e| e.to_string())?;
    template.render(&values()).map_err(|e| e.to_string())
}

fn render(text: &str) -> Result<String, String> {
    render_with(
        text,
        Options {
            functions: Functions::sprig(),
            ..Options::default()
        },
    )
}

fn ok(text: &str) -> String {
    render(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Inside a range `.` is the item, so the inner ranges name the values `$`.
const HOSTILE: &str = "{{range $a := keys .}}{{range $b := keys $}}{{range $c := keys $}}\
                       {{range $d := keys $}}{{range $e := keys $}}{{range $f := keys $}}\
                       {{range $g := keys $}}{{range $h := keys $}}{{range $i := keys $}}\
                       {{end}}{{end}}{{end}}{{end}}{{end}}{{end}}{{end}}{{end}}{{end}}";

#[test]
fn nested_ranges_that_write_nothing_stop_at_the_step_budget() {
    let err = render(HOSTILE).unwrap_err();
    assert_eq!(
        err,
        "exceeded its execution budget (100000 steps / 500 ms); simplify the template"
    );
    let options = Options {
        functions: Functions::sprig(),
        limits: Limits {
            max_steps: 50,
            deadline: Duration::from_secs(3600),
        },
        ..Options::default()
    };
    assert!(render_with("{{ range $k := keys . }}{{ $k }}{{ end }}", options.clone()).is_ok());
    let err = render_with(&"{{ .a }}".repeat(20), options).unwrap_err();
    assert!(err.contains("(50 steps / 3600000 ms)"), "{err}");
}

#[test]
fn a_template_stops_at_its_deadline_whatever_its_steps() {
    let options = Options {
        functions: Functions::sprig(),
        limits: Limits {
            max_steps: u64::MAX,
            deadline: Duration::from_millis(20),
        },
        ..Options::default()
    };
    let template = Template::parse(HOSTILE, options).unwrap();
    let started = Instant::now();
    let err = template.render(&values()).unwrap_err();
    assert!(matches!(err, ExecError::BudgetExceeded(_)), "{err}");
    // Nine nested ranges over four keys would take 4^9 iterations: the deadline stopped it.
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn real_templates_stay_far_within_the_default_budget() {
    let text = "{{- range $k := keys . }}{{ $k }}: {{ index $ $k | quote }}\n{{ end -}}";
    let mut many = HashMap::new();
    for i in 0..200 {
        many.insert(format!("key{i:04}"), Value::from("value"));
    }
    let options = Options {
        functions: Functions::sprig(),
        ..Options::default()
    };
    let out = Template::parse(text, options)
        .unwrap()
        .render(&Value::Map(many))
        .unwrap();
    assert_eq!(out.lines().count(), 200);
}

#[test]
fn a_missing_key_gives_no_value_or_an_error_naming_it() {
    assert_eq!(ok("{{ .nope }}"), "<no value>");
    let options = Options {
        missing_key: MissingKey::Error,
        ..Options::builtins()
    };
    let err = render_with("{{ .user }}{{ .nope }}", options.clone()).unwrap_err();
    assert_eq!(err, "map has no entry for key \"nope\"");
    assert_eq!(
        render_with("{{ .user }}", options.clone()).unwrap(),
        "admin"
    );
    // As in Go, `index` gives no value either way.
    assert_eq!(
        render_with("{{ index . \"nope\" }}", options).unwrap(),
        "<no value>"
    );
}

#[test]
fn other_delimiters_leave_braces_as_text() {
    let options = Options {
        delimiters: Delimiters::new("<%", "%>").unwrap(),
        ..Options::builtins()
    };
    let text = "{{ .user }} <%- .user -%> \n <% if eq .a \"1\" %>{one}<% end %>";
    assert_eq!(render_with(text, options).unwrap(), "{{ .user }}admin{one}");
    for (left, right) in [("", "}}"), ("{{", "} }")] {
        assert!(Delimiters::new(left, right).is_err());
    }
}

#[test]
fn a_template_may_call_only_the_functions_it_was_given() {
    let err = render_with("{{ upper .user }}", Options::builtins()).unwrap_err();
    assert_eq!(err, "line 1: function upper not defined");
    let options = Options {
        functions: Functions::sprig().only(&["upper", "quote"]),
        ..Options::default()
    };
    assert_eq!(
        render_with("{{ .user | upper | quote }}", options.clone()).unwrap(),
        "\"ADMIN\""
    );
    let err = render_with("{{ len .user }}", options).unwrap_err();
    assert_eq!(err, "line 1: function len not defined");
    fn shout(_: &[Value]) -> Result<Value, FuncError> {
        Ok(Value::from("!"))
    }
    let options = Options {
        functions: Functions::default().with(&[("shout", shout)]),
        ..Options::default()
    };
    assert_eq!(render_with("{{ shout }}", options).unwrap(), "!");
}

#[test]
fn ranging_over_a_map_visits_keys_in_order_as_go_does() {
    assert_eq!(
        ok("{{ range $k, $v := . }}{{ $k }}={{ $v }};{{ end }}"),
        "a=1;b=2;password=hunter2;user=admin;"
    );
    assert_eq!(ok("{{ range . }}{{ . }}{{ end }}"), "12hunter2admin");
    assert_eq!(
        ok("{{ range $i, $k := keys . }}{{ $i }}{{ else }}none{{ end }}"),
        "0123"
    );
    assert_eq!(ok("{{ range .nope }}x{{ else }}none{{ end }}"), "none");
}

#[test]
fn go_syntax_that_gtmpl_mishandled() {
    // gtmpl looped forever on the first and panicked on the second and third.
    assert_eq!(render("{{ .user  ").unwrap_err(), "line 1: unclosed action");
    assert_eq!(ok("café {{- .user }}"), "caféadmin");
    assert_eq!(ok("{{ \"é\" }}{{ 'é' }}"), "é233");
    assert_eq!(ok("{{ `a\\b` }}"), "a\\b");
    assert_eq!(ok("a\u{a0} {{- .a -}}\t\n b"), "a\u{a0}1b");
    assert_eq!(ok("{{ .a\n| quote }}"), "\"1\"");
    assert_eq!(ok("{{ if 0.0 }}yes{{ else }}no{{ end }}"), "no");
    assert_eq!(ok("{{/* note */}}{{- /* trimmed */ -}} x"), "x");
}

#[test]
fn refusals_name_their_line() {
    let blocks = |n| format!("{}x{}", "{{ if 1 }}".repeat(n), "{{ end }}".repeat(n));
    let parens = |n| format!("{{{{ {}1{} }}}}", "(".repeat(n), ")".repeat(n));
    let both = blocks(MAX_BLOCK_DEPTH).replace('x', &parens(MAX_PAREN_DEPTH));
    assert_eq!(ok(&both), "1");
    for (text, error) in [
        ("a\n{{ template \"x\" }}", "line 2: named templates"),
        ("{{- define \"x\" }}{{ end }}", "line 1: named templates"),
        ("{{ block \"x\" . }}{{ end }}", "line 1: named templates"),
        ("\n\n{{/* ", "line 3: unclosed comment"),
        ("{{/* */ }}", "line 1: comment ends before"),
        ("{{ \"}} ", "line 1: unterminated quoted string"),
        ("{{ \"a\nb\" }}", "line 1: unterminated quoted string"),
        ("{{ `}} ", "line 1: unterminated raw quoted string"),
        ("{{ \"\\x41\" }}", "line 1: unsupported escape"),
        ("{{ \"\\u00e9\" }}", "line 1: unsupported escape"),
        ("{{ '\\é' }}", "line 1: unsupported escape"),
        ("{{ .x€ }}", "line 1: bad character '€'"),
        ("{{ ) }}", "line 1: unexpected right paren"),
        ("{{ $nope }}", "line 1: undefined variable $nope"),
        ("x\n{{ if 1 }}", "line 2: unexpected EOF"),
    ] {
        let err = render(text).unwrap_err();
        assert!(err.starts_with(error), "{text:?}: {err}");
    }
    let err = render(&blocks(MAX_BLOCK_DEPTH + 1)).unwrap_err();
    assert!(err.contains("blocks nest too deeply"), "{err}");
    let err = render(&parens(MAX_PAREN_DEPTH + 1)).unwrap_err();
    assert!(err.contains("parentheses nest too deeply"), "{err}");
    // Sequential blocks are not nested ones.
    assert!(render(&"{{ if 1 }}{{ else if 2 }}{{ end }}".repeat(100)).is_ok());
}

#[test]
fn no_error_shows_a_value() {
    for text in [
        "{{ lt .password 1 }}",
        "{{ index .password 1 }}",
        "{{ printf \"%d\" .password }}",
        "{{ range .password }}{{ end }}",
        "{{ .password.field }}",
        "{{ call .password }}",
        "{{ b64dec .password }}",
        "{{ upper . }}",
        "{{ .password | nosuchfunction }}",
        "{{ printf \"%[0]d\" .password }}",
        "{{ printf \"%0999999999d\" 1 }}",
    ] {
        let err = render(text).unwrap_err();
        assert!(!err.contains("hunter2"), "{text}: {err}");
    }
}

proptest::proptest! {
    /// Whatever the text, parsing and running end with output or an error.
    #[test]
    fn any_text_renders_or_fails_cleanly(parts in proptest::collection::vec(
        proptest::sample::select(vec![
            "{{", "}}", "{{- ", " -}}", "/*", "*/", " ", "\n", ".", ".user", "$", ":=", "$x",
            "\"", "`", "'", "\\", "|", "(", ")", "-", "1", "é", "{", "}", "range ", "if ",
            "end", "else", "with ", "define \"t\"", "template \"t\"", "printf ", "upper ",
            "default ", "index ", "keys ", "x", "\\x4", "\\n", "'\\x41'", "%", "%[0]d",
        ]),
        0..24,
    )) {
        let _ = render(&parts.concat());
    }
}

#[test]
fn printf_pads_with_zeros_as_go_does() {
    assert_eq!(
        ok("{{ printf \"%05d|%08.3f|%-5d|%x\" 42 3.14159 7 255 }}"),
        "00042|0003.142|7    |ff"
    );
}

#[test]
fn printf_formats_integers_of_either_sign() {
    assert_eq!(
        ok(
            r#"{{ printf "%b|%d|%v|%o|%x|%X|%c|%q|%U|%#x|%+d" 10 10 10 8 255 255 65 65 65 255 3 }}"#
        ),
        "1010|10|10|10|ff|FF|A|'A'|U+41|0xff|+3"
    );
    // Go prints a negative number for %v as for %d.
    assert_eq!(
        ok(r#"{{ printf "%d|%v|%5d" -10 -10 -3 }}"#),
        "-10|-10|   -3"
    );
    for text in [r#"{{ printf "%c" -1 }}"#, r#"{{ printf "%s" -1 }}"#] {
        assert!(render(text).is_err(), "{text}");
    }
}

#[test]
fn index_of_a_path_gives_what_the_function_gives() {
    // A key of a pipeline makes `index` copy its arguments and call the function.
    for (key, through_function) in [
        (r#""user""#, r#"(print "user")"#),
        (r#""nope""#, r#"(print "nope")"#),
        ("1", "(len \"x\")"),
    ] {
        for collection in [".", "$", "$.user"] {
            let in_place = format!("{{{{ index {collection} {key} }}}}");
            let called = format!("{{{{ index {collection} {through_function} }}}}");
            assert_eq!(render(&in_place), render(&called), "{in_place}");
        }
    }
    assert_eq!(ok(r#"{{ "user" | index . }}"#), "admin");
    assert!(render("{{ index . }}").unwrap_err().contains("at least 2"));
    // An `index` of the caller's replaces the builtin.
    fn first(args: &[Value]) -> Result<Value, FuncError> {
        Ok(args[0].clone())
    }
    let options = Options {
        functions: Functions::builtins().with(&[("index", first)]),
        ..Options::default()
    };
    assert_eq!(
        render_with(r#"{{ index .user "x" }}"#, options).unwrap(),
        "admin"
    );
}
