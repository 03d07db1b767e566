//! Functions that External Secrets Operator's templates add to sprig: YAML both ways and
//! PEM filtering. Errors name the function, never a value.

use std::collections::HashMap;

use crate::pki::go_pem;
use crate::sprig::{exactly, fail, json_of, texts};
use crate::value::{Func, FuncError, Value};

/// The functions, by name.
pub const FUNCTIONS: &[(&str, Func)] = &[
    ("toYaml", to_yaml),
    ("fromYaml", from_yaml),
    ("filterPEM", filter_pem),
];

/// YAML of a value, without the trailing newline (as upstream's `toYaml`).
fn to_yaml(args: &[Value]) -> Result<Value, FuncError> {
    exactly("toYaml", args, 1)?;
    let yaml = serde_norway::to_string(&json_of(&args[0])?)
        .map_err(|_| fail("toYaml", "the value has no YAML form"))?;
    Ok(yaml.trim_end_matches('\n').to_string().into())
}

/// A YAML (or JSON) document as a value: maps, lists, strings, numbers, booleans.
fn from_yaml(args: &[Value]) -> Result<Value, FuncError> {
    let [text] = texts::<1>("fromYaml", args)?;
    let json: serde_json::Value = serde_norway::from_str(&text)
        .map_err(|_| fail("fromYaml", "the text is not a YAML document"))?;
    Ok(value_of(json))
}

fn value_of(json: serde_json::Value) -> Value {
    use serde_json::Value as Json;
    match json {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(b),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::from(i),
            (None, Some(u), _) => Value::from(u),
            (None, None, Some(f)) => Value::from(f),
            _ => Value::Nil,
        },
        Json::String(s) => Value::String(s),
        Json::Array(items) => Value::Array(items.into_iter().map(value_of).collect()),
        Json::Object(map) => Value::Map(
            map.into_iter()
                .map(|(k, v)| (k, value_of(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

/// The PEM blocks of one type (e.g. `CERTIFICATE`, in any case, as upstream) of a PEM
/// bundle, in order, with `\n` line endings (as Go writes PEM).
fn filter_pem(args: &[Value]) -> Result<Value, FuncError> {
    let [kind, bundle] = texts::<2>("filterPEM", args)?;
    let blocks = pem::parse_many(bundle.as_bytes())
        .map_err(|_| fail("filterPEM", "argument 2 is not PEM"))?;
    let kept: Vec<pem::Pem> = blocks
        .into_iter()
        .filter(|b| same_ignoring_case(b.tag(), &kind))
        .collect();
    Ok(go_pem(&kept).into())
}

/// Go's `strings.EqualFold` for the simple case folding PEM types need.
fn same_ignoring_case(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{Functions, Options, Template};

    /// Renders `text` over text values with the sprig set and all of upstream ESO's own
    /// functions.
    pub(crate) fn render(text: &str, data: &[(&str, &str)]) -> Result<String, String> {
        let data: Vec<_> = data.iter().map(|&(k, v)| (k, Value::from(v))).collect();
        render_values(text, &data)
    }

    /// [`render`] over any values.
    pub(crate) fn render_values(text: &str, data: &[(&str, Value)]) -> Result<String, String> {
        let options = Options {
            functions: Functions::sprig()
                .with(FUNCTIONS)
                .with(crate::pki::FUNCTIONS),
            ..Options::default()
        };
        let template = Template::parse(text, options).map_err(|e| e.to_string())?;
        let context = Value::Map(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        );
        template.render(&context).map_err(|e| e.to_string())
    }

    #[test]
    fn yaml_goes_both_ways() {
        let yaml = "a: 1\nb:\n- x\n- y\n";
        assert_eq!(
            render(
                "{{ (fromYaml .y).b | join \",\" }}/{{ (fromYaml .y).a }}",
                &[("y", yaml)]
            )
            .unwrap(),
            "x,y/1"
        );
        assert_eq!(
            render("{{ fromYaml .y | toYaml }}", &[("y", yaml)]).unwrap(),
            yaml.trim_end()
        );
        let error = render("{{ fromYaml .y }}", &[("y", "a: [unclosed")]).unwrap_err();
        assert!(!error.contains("unclosed"), "{error}");
    }

    #[test]
    fn filter_pem_keeps_the_blocks_of_one_type_in_any_case_with_lf_endings() {
        let cert = pem::encode(&pem::Pem::new("CERTIFICATE", vec![1, 2, 3]));
        let key = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![4, 5, 6]));
        assert!(cert.contains("\r\n"), "the input has CRLF endings");
        let bundle = format!("{cert}{key}{cert}");
        let lf = "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n";
        for kind in ["CERTIFICATE", "certificate", "Certificate"] {
            let text = format!("{{{{ filterPEM \"{kind}\" .b }}}}");
            assert_eq!(render(&text, &[("b", &bundle)]).unwrap(), lf.repeat(2));
        }
        assert_eq!(
            render("{{ filterPEM \"PUBLIC KEY\" .b }}", &[("b", &bundle)]).unwrap(),
            ""
        );
    }
}
