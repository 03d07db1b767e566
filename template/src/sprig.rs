//! The sprig functions that Helm-style templates commonly use. Arguments follow sprig's
//! order (the piped value comes last). Like sealed-secrets, nothing here reads the
//! environment or the network (sprig's `env`, `expandenv` and `getHostByName` are absent).

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::error::kind;
use crate::value::{Func, FuncError, Value};

/// Most bytes `repeat`, `indent` and `nindent` may produce or pad to: a function must not
/// make its caller allocate without bound.
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;

/// The sprig functions, by name.
pub const FUNCTIONS: &[(&str, Func)] = &[
    ("b64enc", b64enc),
    ("b64dec", b64dec),
    ("sha256sum", sha256sum),
    ("upper", upper),
    ("lower", lower),
    ("title", title),
    ("trim", trim),
    ("trimPrefix", trim_prefix),
    ("trimSuffix", trim_suffix),
    ("replace", replace),
    ("contains", contains),
    ("hasPrefix", has_prefix),
    ("hasSuffix", has_suffix),
    ("quote", quote),
    ("squote", squote),
    ("default", default),
    ("indent", indent),
    ("nindent", nindent),
    ("trunc", trunc),
    ("repeat", repeat),
    ("join", join),
    ("keys", keys),
    ("sortAlpha", sort_alpha),
    ("toJson", to_json),
];

/// A failure of one of these functions. Its message names the function and an argument's
/// position or kind, never its value.
#[derive(Debug, thiserror::Error)]
#[error("{function}: {problem}")]
struct FunctionError {
    function: &'static str,
    problem: String,
}

/// `FuncError` carries foreign errors as `anyhow::Error`.
pub(crate) fn fail(function: &'static str, problem: impl Into<String>) -> FuncError {
    FuncError::Other(anyhow::Error::new(FunctionError {
        function,
        problem: problem.into(),
    }))
}

pub(crate) fn exactly(
    function: &'static str,
    args: &[Value],
    count: usize,
) -> Result<(), FuncError> {
    if args.len() == count {
        return Ok(());
    }
    Err(fail(
        function,
        format!("takes {count} argument(s), got {}", args.len()),
    ))
}

/// Argument `i` as text; numbers and booleans are printed as Go would print them.
pub(crate) fn text<'a>(
    function: &'static str,
    args: &'a [Value],
    i: usize,
) -> Result<Cow<'a, str>, FuncError> {
    match &args[i] {
        Value::String(s) => Ok(Cow::Borrowed(s)),
        Value::Bytes(_) => Err(fail(
            function,
            format!("argument {} is binary data, not UTF-8 text", i + 1),
        )),
        other => printable(function, other, i).map(|s| Cow::Owned(s.into_owned())),
    }
}

/// Argument `i` as a string's bytes, text or not; numbers and booleans are printed.
pub(crate) fn bytes<'a>(
    function: &'static str,
    args: &'a [Value],
    i: usize,
) -> Result<Cow<'a, [u8]>, FuncError> {
    match args[i].as_bytes() {
        Some(bytes) => Ok(Cow::Borrowed(bytes)),
        None => printable(function, &args[i], i).map(|s| Cow::Owned(s.into_owned().into_bytes())),
    }
}

/// A number or boolean as Go prints it; any other value that is not a string is refused.
fn printable<'a>(
    function: &'static str,
    value: &'a Value,
    i: usize,
) -> Result<Cow<'a, str>, FuncError> {
    match value {
        Value::String(s) => Ok(Cow::Borrowed(s)),
        Value::Number(_) | Value::Bool(_) => Ok(Cow::Owned(value.to_string())),
        Value::NoValue | Value::Nil => Err(fail(
            function,
            format!("argument {} has no value (is the key missing?)", i + 1),
        )),
        other => Err(fail(
            function,
            format!("argument {} must be text, not {}", i + 1, kind(other)),
        )),
    }
}

/// All `N` arguments as text, refusing any other count.
pub(crate) fn texts<'a, const N: usize>(
    function: &'static str,
    args: &'a [Value],
) -> Result<[Cow<'a, str>; N], FuncError> {
    exactly(function, args, N)?;
    let all = (0..N)
        .map(|i| text(function, args, i))
        .collect::<Result<Vec<_>, _>>()?;
    // Not `expect`: its panic message would print the (secret) texts.
    Ok(all
        .try_into()
        .unwrap_or_else(|_| unreachable!("the count was checked")))
}

fn int(function: &'static str, args: &[Value], i: usize) -> Result<i64, FuncError> {
    match &args[i] {
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
    .ok_or_else(|| fail(function, format!("argument {} must be an integer", i + 1)))
}

/// Argument `i` as a width or count of at most `MAX_OUTPUT_BYTES`.
fn size(function: &'static str, args: &[Value], i: usize) -> Result<usize, FuncError> {
    usize::try_from(int(function, args, i)?)
        .ok()
        .filter(|&n| n <= MAX_OUTPUT_BYTES)
        .ok_or_else(|| {
            fail(
                function,
                format!(
                    "argument {} must be between 0 and {MAX_OUTPUT_BYTES}",
                    i + 1
                ),
            )
        })
}

fn b64enc(args: &[Value]) -> Result<Value, FuncError> {
    exactly("b64enc", args, 1)?;
    Ok(STANDARD.encode(bytes("b64enc", args, 0)?).into())
}

/// The decoded bytes, text or not (a PKCS#12 bundle for `pkcs12key`, say), as Go's string.
/// Unlike sprig, which returns the decoder's error text as the result, invalid input fails:
/// an error message must not end up in a Secret.
fn b64dec(args: &[Value]) -> Result<Value, FuncError> {
    exactly("b64dec", args, 1)?;
    let decoded = STANDARD
        .decode(bytes("b64dec", args, 0)?)
        .map_err(|_| fail("b64dec", "the argument is not valid base64"))?;
    Ok(Value::from_bytes(decoded))
}

fn sha256sum(args: &[Value]) -> Result<Value, FuncError> {
    exactly("sha256sum", args, 1)?;
    let digest = Sha256::digest(bytes("sha256sum", args, 0)?);
    Ok(digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into())
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    let [s] = texts("upper", args)?;
    Ok(s.to_uppercase().into())
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    let [s] = texts("lower", args)?;
    Ok(s.to_lowercase().into())
}

fn title(args: &[Value]) -> Result<Value, FuncError> {
    let [s] = texts("title", args)?;
    let mut titled = String::with_capacity(s.len());
    let mut word_start = true;
    for c in s.chars() {
        if word_start {
            titled.extend(c.to_uppercase());
        } else {
            titled.push(c);
        }
        word_start = separates_words(c);
    }
    Ok(titled.into())
}

/// Go's `strings.Title` rule: ASCII letters, digits and `_` continue a word, as do all other
/// letters and digits; other ASCII characters and white space end it.
fn separates_words(c: char) -> bool {
    if c.is_ascii() {
        return !(c.is_ascii_alphanumeric() || c == '_');
    }
    c.is_whitespace()
}

fn trim(args: &[Value]) -> Result<Value, FuncError> {
    let [s] = texts("trim", args)?;
    Ok(s.trim().into())
}

fn trim_prefix(args: &[Value]) -> Result<Value, FuncError> {
    let [prefix, s] = texts("trimPrefix", args)?;
    Ok(s.strip_prefix(&*prefix).unwrap_or(&s).into())
}

fn trim_suffix(args: &[Value]) -> Result<Value, FuncError> {
    let [suffix, s] = texts("trimSuffix", args)?;
    Ok(s.strip_suffix(&*suffix).unwrap_or(&s).into())
}

fn replace(args: &[Value]) -> Result<Value, FuncError> {
    let [old, new, s] = texts("replace", args)?;
    Ok(s.replace(&*old, &new).into())
}

fn contains(args: &[Value]) -> Result<Value, FuncError> {
    let [needle, s] = texts("contains", args)?;
    Ok(s.contains(&*needle).into())
}

fn has_prefix(args: &[Value]) -> Result<Value, FuncError> {
    let [prefix, s] = texts("hasPrefix", args)?;
    Ok(s.starts_with(&*prefix).into())
}

fn has_suffix(args: &[Value]) -> Result<Value, FuncError> {
    let [suffix, s] = texts("hasSuffix", args)?;
    Ok(s.ends_with(&*suffix).into())
}

/// Each argument Go-quoted, separated by spaces; missing values are skipped, as in sprig.
fn quote(args: &[Value]) -> Result<Value, FuncError> {
    Ok(present_strings(args)
        .map(|s| go_quote(&s))
        .collect::<Vec<_>>()
        .join(" ")
        .into())
}

fn squote(args: &[Value]) -> Result<Value, FuncError> {
    let quoted: Vec<Vec<u8>> = present_strings(args)
        .map(|s| [b"'".as_slice(), &s, b"'"].concat())
        .collect();
    Ok(Value::from_bytes(quoted.join(&b' ')))
}

/// The values that are present, as the bytes Go prints of them.
fn present_strings(values: &[Value]) -> impl Iterator<Item = Cow<'_, [u8]>> {
    values
        .iter()
        .filter(|v| !is_missing(v))
        .map(|value| match value.as_bytes() {
            Some(bytes) => Cow::Borrowed(bytes),
            None => Cow::Owned(value.to_string().into_bytes()),
        })
}

fn is_missing(value: &Value) -> bool {
    matches!(value, Value::NoValue | Value::Nil)
}

/// Go's `%q`: double quotes with backslash escapes for quotes, backslashes, control
/// characters and bytes that are not UTF-8.
pub(crate) fn go_quote(s: &[u8]) -> String {
    let mut quoted = String::with_capacity(s.len() + 2);
    quoted.push('"');
    for chunk in s.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => quoted.push_str("\\\""),
                '\\' => quoted.push_str("\\\\"),
                '\n' => quoted.push_str("\\n"),
                '\r' => quoted.push_str("\\r"),
                '\t' => quoted.push_str("\\t"),
                '\u{7}' => quoted.push_str("\\a"),
                '\u{8}' => quoted.push_str("\\b"),
                '\u{c}' => quoted.push_str("\\f"),
                '\u{b}' => quoted.push_str("\\v"),
                c if c.is_control() && (c as u32) < 0x80 => {
                    quoted.push_str(&format!("\\x{:02x}", c as u32))
                }
                c if c.is_control() => quoted.push_str(&format!("\\u{:04x}", c as u32)),
                c => quoted.push(c),
            }
        }
        for byte in chunk.invalid() {
            quoted.push_str(&format!("\\x{byte:02x}"));
        }
    }
    quoted.push('"');
    quoted
}

/// `default FALLBACK GIVEN`: GIVEN unless it is empty in Go's sense (missing, nil, false,
/// zero, empty text or collection).
fn default(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [fallback] => Ok(fallback.clone()),
        [fallback, given] if is_empty(given) => Ok(fallback.clone()),
        [_, given] => Ok(given.clone()),
        _ => Err(fail(
            "default",
            format!("takes 1 or 2 arguments, got {}", args.len()),
        )),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::NoValue | Value::Nil => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Bytes(b) => b.is_empty(),
        Value::Number(n) => {
            n.as_i64() == Some(0) || n.as_u64() == Some(0) || n.as_f64() == Some(0.0)
        }
        Value::Array(items) => items.is_empty(),
        Value::Map(map) | Value::Object(map) => map.is_empty(),
        Value::Function(_) => false,
    }
}

fn indent(args: &[Value]) -> Result<Value, FuncError> {
    exactly("indent", args, 2)?;
    Ok(indented(size("indent", args, 0)?, &text("indent", args, 1)?).into())
}

fn nindent(args: &[Value]) -> Result<Value, FuncError> {
    exactly("nindent", args, 2)?;
    let body = indented(size("nindent", args, 0)?, &text("nindent", args, 1)?);
    Ok(format!("\n{body}").into())
}

fn indented(width: usize, s: &str) -> String {
    let pad = " ".repeat(width);
    format!("{pad}{}", s.replace('\n', &format!("\n{pad}")))
}

/// `trunc N S`: the first N characters of S, or with a negative N the last -N. Counts
/// characters where Go counts bytes, so multi-byte text is never cut mid-character.
fn trunc(args: &[Value]) -> Result<Value, FuncError> {
    exactly("trunc", args, 2)?;
    let n = int("trunc", args, 0)?;
    let s = text("trunc", args, 1)?;
    let limit = usize::try_from(n.unsigned_abs()).unwrap_or(usize::MAX);
    let kept: String = if n < 0 {
        let skip = s.chars().count().saturating_sub(limit);
        s.chars().skip(skip).collect()
    } else {
        s.chars().take(limit).collect()
    };
    Ok(kept.into())
}

fn repeat(args: &[Value]) -> Result<Value, FuncError> {
    exactly("repeat", args, 2)?;
    let count = size("repeat", args, 0)?;
    let s = text("repeat", args, 1)?;
    if s.len().saturating_mul(count) > MAX_OUTPUT_BYTES {
        return Err(fail(
            "repeat",
            format!("the result would exceed {MAX_OUTPUT_BYTES} bytes"),
        ));
    }
    Ok(s.repeat(count).into())
}

/// `join SEP LIST`; a single value counts as a list of one, missing items are skipped.
fn join(args: &[Value]) -> Result<Value, FuncError> {
    exactly("join", args, 2)?;
    let separator = bytes("join", args, 0)?;
    Ok(Value::from_bytes(list_strings(&args[1]).join(&*separator)))
}

fn list_strings(value: &Value) -> Vec<Cow<'_, [u8]>> {
    match value {
        Value::Array(items) => present_strings(items).collect(),
        other => present_strings(std::slice::from_ref(other)).collect(),
    }
}

/// The keys of the maps given, sorted (sprig leaves them unordered), so that ranging over
/// them gives the same output on every run.
fn keys(args: &[Value]) -> Result<Value, FuncError> {
    let mut names = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        match arg {
            Value::Map(map) | Value::Object(map) => names.extend(map.keys().cloned()),
            other => {
                return Err(fail(
                    "keys",
                    format!("argument {} must be a map, not {}", i + 1, kind(other)),
                ));
            }
        }
    }
    names.sort();
    Ok(names.into())
}

fn sort_alpha(args: &[Value]) -> Result<Value, FuncError> {
    exactly("sortAlpha", args, 1)?;
    let mut items: Vec<Vec<u8>> = list_strings(&args[0])
        .into_iter()
        .map(Cow::into_owned)
        .collect();
    items.sort();
    Ok(Value::Array(
        items.into_iter().map(Value::from_bytes).collect(),
    ))
}

/// JSON as Go's `encoding/json` writes it: map keys sorted, and `<`, `>`, `&`, U+2028 and
/// U+2029 escaped.
fn to_json(args: &[Value]) -> Result<Value, FuncError> {
    exactly("toJson", args, 1)?;
    let json = json_of(&args[0])?.to_string();
    Ok(json.chars().map(go_json_escape).collect::<String>().into())
}

fn go_json_escape(c: char) -> Cow<'static, str> {
    match c {
        '<' => "\\u003c".into(),
        '>' => "\\u003e".into(),
        '&' => "\\u0026".into(),
        '\u{2028}' => "\\u2028".into(),
        '\u{2029}' => "\\u2029".into(),
        c => c.to_string().into(),
    }
}

pub(crate) fn json_of(value: &Value) -> Result<serde_json::Value, FuncError> {
    use serde_json::Value as Json;
    Ok(match value {
        Value::NoValue | Value::Nil => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        // Go writes each byte that is not UTF-8 as U+FFFD.
        Value::Bytes(b) => Json::String(
            b.utf8_chunks()
                .flat_map(|chunk| {
                    let invalid = chunk.invalid().iter().map(|_| '\u{fffd}');
                    chunk.valid().chars().chain(invalid)
                })
                .collect(),
        ),
        Value::Number(n) => n
            .as_i64()
            .map(Json::from)
            .or_else(|| n.as_u64().map(Json::from))
            .or_else(|| {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Json::Number)
            })
            .ok_or_else(|| fail("toJson", "a number that is not finite has no JSON form"))?,
        Value::Array(items) => Json::Array(items.iter().map(json_of).collect::<Result<_, _>>()?),
        Value::Map(map) | Value::Object(map) => Json::Object(
            map.iter()
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .map(|(k, v)| Ok((k.clone(), json_of(v)?)))
                .collect::<Result<_, FuncError>>()?,
        ),
        Value::Function(_) => return Err(fail("toJson", "a function cannot be written as JSON")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Renders `text` with these functions over `{"s": S, "n": "", "list": [b, a]}`.
    fn render(text: &str, s: &str) -> Result<String, String> {
        let options = crate::Options {
            functions: crate::Functions::sprig(),
            ..Default::default()
        };
        let template = crate::Template::parse(text, options).map_err(|e| e.to_string())?;
        let context = Value::Map(HashMap::from([
            ("s".to_string(), Value::from(s)),
            ("n".to_string(), Value::from("")),
            ("list".to_string(), Value::from(vec!["b", "a"])),
        ]));
        template.render(&context).map_err(|e| e.to_string())
    }

    fn ok(text: &str, s: &str) -> String {
        render(text, s).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn encodings_and_digests() {
        assert_eq!(ok("{{ .s | b64enc }}", "hunter2"), "aHVudGVyMg==");
        assert_eq!(ok("{{ .s | b64dec }}", "aHVudGVyMg=="), "hunter2");
        assert_eq!(ok("{{ .s | b64enc | b64dec }}", "añ€"), "añ€");
        assert!(render("{{ .s | b64dec }}", "not base64!").is_err());
        assert_eq!(
            ok("{{ sha256sum .s }}", "abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// The raw output of `text` over `{"bin": 0xff 0x00 0xfe, "s": S}`.
    fn output(text: &str, s: &str) -> Result<Vec<u8>, String> {
        let options = crate::Options {
            functions: crate::Functions::sprig(),
            ..Default::default()
        };
        let template = crate::Template::parse(text, options).map_err(|e| e.to_string())?;
        let context = Value::Map(HashMap::from([
            ("bin".to_string(), Value::from_bytes(vec![0xff, 0x00, 0xfe])),
            ("s".to_string(), Value::from(s)),
        ]));
        let mut out = Vec::new();
        template
            .execute(&mut out, &context)
            .map_err(|e| e.to_string())?;
        Ok(out)
    }

    #[test]
    fn binary_strings_pass_through_as_go_strings_do() {
        let bin = [0xffu8, 0x00, 0xfe];
        assert_eq!(output("{{ .s | b64dec }}", "/wD+").unwrap(), bin);
        assert_eq!(output("{{ .bin }}", "").unwrap(), bin);
        assert_eq!(output("{{ .bin | b64enc }}", "").unwrap(), b"/wD+");
        assert_eq!(output("{{ .bin | b64enc | b64dec }}", "").unwrap(), bin);
        assert_eq!(
            output("a{{ print .bin 1 }}", "").unwrap(),
            b"a\xff\x00\xfe1"
        );
        assert_eq!(
            output("{{ printf \"<%s|%x|%5.2s>\" .bin .bin .bin }}", "").unwrap(),
            b"<\xff\x00\xfe|ff00fe|   \xff\x00>"
        );
        assert_eq!(
            output("{{ .bin | quote }}", "").unwrap(),
            br#""\xff\x00\xfe""#
        );
        assert_eq!(
            output("{{ printf \"%q %q\" .bin .s }}", "a\"é").unwrap(),
            r#""\xff\x00\xfe" "a\"é""#.as_bytes()
        );
        let text = "{{ len .bin }} {{ eq .bin (b64dec .s) }} {{ eq .bin \"x\" }} {{ lt .s .bin }}";
        assert_eq!(output(text, "/wD+").unwrap(), b"3 true false true");
        assert_eq!(
            output("{{ .bin | sha256sum | trunc 8 }} {{ toJson .bin }}", "").unwrap(),
            "af9ceddc \"\u{fffd}\\u0000\u{fffd}\"".as_bytes()
        );
        assert_eq!(output("{{ if .bin }}yes{{ end }}", "").unwrap(), b"yes");
    }

    #[test]
    fn text_functions_refuse_binary_strings_by_name() {
        for function in [
            "upper",
            "trim",
            "title",
            "indent 2",
            "trunc 1",
            "contains \"a\"",
        ] {
            let text = format!("{{{{ .bin | {function} }}}}");
            let msg = output(&text, "").unwrap_err();
            let name = function.split(' ').next().unwrap();
            assert!(
                msg.contains(&format!("{name}: argument"))
                    && msg.contains("is binary data, not UTF-8 text"),
                "{msg}"
            );
        }
    }

    #[test]
    fn case_changes() {
        assert_eq!(ok("{{ upper .s }} {{ lower .s }}", "MiXed"), "MIXED mixed");
        assert_eq!(
            ok("{{ title .s }}", "hello wORLD snake_case kebab-case écoute"),
            "Hello WORLD Snake_case Kebab-Case Écoute"
        );
    }

    #[test]
    fn trimming_replacing_and_searching() {
        assert_eq!(ok("[{{ trim .s }}]", " \t x y \n"), "[x y]");
        assert_eq!(ok("{{ .s | trimPrefix \"db-\" }}", "db-prod"), "prod");
        assert_eq!(ok("{{ .s | trimSuffix \".local\" }}", "db.local"), "db");
        assert_eq!(ok("{{ .s | trimPrefix \"x\" }}", "db"), "db");
        assert_eq!(ok("{{ .s | replace \"-\" \"_\" }}", "a-b-c"), "a_b_c");
        let text = "{{ contains \"@\" .s }} {{ hasPrefix \"ad\" .s }} {{ hasSuffix \"x\" .s }}";
        assert_eq!(ok(text, "admin@db"), "true true false");
    }

    #[test]
    fn quoting() {
        assert_eq!(
            ok("{{ quote .s }}", "a\"b\\c\nd\u{1}"),
            r#""a\"b\\c\nd\x01""#
        );
        assert_eq!(ok("{{ quote .s 3 .missing }}", "x"), "\"x\" \"3\"");
        assert_eq!(ok("{{ squote .s }}", "it"), "'it'");
    }

    #[test]
    fn defaults() {
        assert_eq!(ok("{{ .missing | default \"d\" }}", ""), "d");
        assert_eq!(ok("{{ .n | default \"d\" }}", ""), "d");
        assert_eq!(ok("{{ .s | default \"d\" }}", "given"), "given");
        assert_eq!(
            ok("{{ 0 | default 5 }} {{ false | default true }}", ""),
            "5 true"
        );
        assert_eq!(ok("{{ default \"d\" }}", ""), "d");
    }

    #[test]
    fn layout() {
        assert_eq!(ok("{{ .s | indent 2 }}", "a\nb"), "  a\n  b");
        assert_eq!(ok("k:{{ .s | nindent 2 }}", "a\nb"), "k:\n  a\n  b");
        assert_eq!(
            ok("{{ .s | trunc 3 }}|{{ .s | trunc -2 }}", "abcdef"),
            "abc|ef"
        );
        assert_eq!(
            ok("{{ .s | trunc 10 }}|{{ .s | trunc -10 }}", "añ€"),
            "añ€|añ€"
        );
        assert_eq!(ok("{{ .s | trunc 2 }}", "añ€"), "añ");
        assert_eq!(ok("{{ .s | repeat 3 }}", "ab"), "ababab");
        assert!(render("{{ .s | repeat -1 }}", "ab").is_err());
        assert!(
            render("{{ .s | repeat 600000 }}", "ab")
                .unwrap_err()
                .contains("exceed")
        );
        assert!(render("{{ .s | indent 99999999 }}", "ab").is_err());
    }

    #[test]
    fn lists_and_json() {
        assert_eq!(ok("{{ .list | join \", \" }}", ""), "b, a");
        assert_eq!(ok("{{ .s | join \", \" }}", "one"), "one");
        assert_eq!(ok("{{ .list | sortAlpha | join \"\" }}", ""), "ab");
        assert_eq!(ok("{{ keys . | join \" \" }}", ""), "list n s");
        assert_eq!(
            ok("{{ toJson .s }}", "<a&b>\n"),
            r#""\u003ca\u0026b\u003e\n""#
        );
        assert_eq!(
            ok("{{ toJson . }}", "x"),
            r#"{"list":["b","a"],"n":"","s":"x"}"#
        );
        assert_eq!(ok("{{ toJson .missing }}", ""), "null");
    }

    #[test]
    fn wrong_arguments_are_reported_by_position_and_kind() {
        let msg = render("{{ upper .list }}", "").unwrap_err();
        assert!(
            msg.contains("upper: argument 1 must be text, not a list"),
            "{msg}"
        );
        let msg = render("{{ indent \"2\" .s }}", "x").unwrap_err();
        assert!(
            msg.contains("indent: argument 1 must be an integer"),
            "{msg}"
        );
        let msg = render("{{ trimPrefix .s }}", "x").unwrap_err();
        assert!(
            msg.contains("trimPrefix: takes 2 argument(s), got 1"),
            "{msg}"
        );
    }
}
