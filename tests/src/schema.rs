//! Comparison of two CRD schemas by what they accept: does every object that upstream's
//! OpenAPI schema accepts pass ours? Used by the CRD compatibility tests.

use std::collections::BTreeSet;

use serde_json::{Value, json};

/// Deliberate, listed exceptions to "ours accepts whatever upstream accepts".
#[derive(Debug, Default, Clone, Copy)]
pub struct Allowances<'a> {
    /// Property paths that only ours types (e.g. status fields only sealsync writes, or
    /// fields of a later upstream release than the one compared with).
    pub ours_only: &'a [&'a str],
    /// Upstream subtrees that ours refuses on purpose (e.g. providers sealsync lacks).
    pub refused: &'a [&'a str],
    /// Paths (`""` = the root) where ours may carry CEL rules that upstream enforces in its
    /// admission webhook rather than in its schema.
    pub webhook_rules_at: &'a [&'a str],
    /// Property paths that ours requires where upstream refuses their absence elsewhere
    /// (its webhook, or a controller that cannot work without them).
    pub required_elsewhere: &'a [&'a str],
}

/// What [`compare`] found.
#[derive(Debug, Default)]
pub struct Comparison {
    /// Every property path compared (`a.b`, `a[]` for items, `a.*` for map values).
    pub visited: BTreeSet<String>,
    /// Each way in which ours rejects something upstream accepts.
    pub problems: Vec<String>,
}

/// Properties that every custom resource has whether its schema lists them or not.
const IMPLICIT_ROOT_PROPERTIES: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Keywords that narrow what a schema accepts: ours may only carry those upstream has
/// (`enum` is checked apart: ours may list more values).
const NARROWING: [&str; 15] = [
    "pattern",
    "maxLength",
    "minLength",
    "maximum",
    "minimum",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "multipleOf",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "x-kubernetes-validations",
    "x-kubernetes-embedded-resource",
];

/// Compares `ours` with `upstream` (two `openAPIV3Schema`s).
pub fn compare(upstream: &Value, ours: &Value, allowances: &Allowances<'_>) -> Comparison {
    let mut comparison = Comparison::default();
    check_accepts(upstream, ours, "", allowances, &mut comparison);
    comparison
}

fn check_accepts(
    upstream: &Value,
    ours: &Value,
    path: &str,
    allowances: &Allowances<'_>,
    out: &mut Comparison,
) {
    out.visited.insert(path.to_owned());
    let at = if path.is_empty() { "<root>" } else { path };
    let int_or_string = ours["x-kubernetes-int-or-string"] == true
        && matches!(upstream["type"].as_str(), Some("integer" | "string"));
    if upstream["type"] != ours["type"] && !int_or_string {
        out.problems.push(format!(
            "{at}: type {} upstream, {} ours",
            upstream["type"], ours["type"]
        ));
    }
    for flag in [
        "nullable",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-int-or-string",
    ] {
        if upstream[flag] == true && ours[flag] != true {
            out.problems
                .push(format!("{at}: upstream has {flag}: true, ours does not"));
        }
    }
    if !ours["format"].is_null() && ours["format"] != upstream["format"] {
        out.problems.push(format!(
            "{at}: format {} ours, {} upstream",
            ours["format"], upstream["format"]
        ));
    }
    for keyword in NARROWING {
        let allowed =
            keyword == "x-kubernetes-validations" && allowances.webhook_rules_at.contains(&path);
        if !ours[keyword].is_null() && ours[keyword] != upstream[keyword] && !allowed {
            out.problems.push(format!(
                "{at}: ours has {keyword}: {}, upstream {}",
                ours[keyword], upstream[keyword]
            ));
        }
    }
    if let Some(our_values) = ours["enum"].as_array() {
        let upstream_values = upstream["enum"].as_array();
        match upstream_values {
            None => out.problems.push(format!(
                "{at}: ours has enum {}, upstream none",
                ours["enum"]
            )),
            Some(values) => {
                for value in values.iter().filter(|v| !our_values.contains(v)) {
                    out.problems
                        .push(format!("{at}: upstream allows {value}, ours does not"));
                }
            }
        }
    }
    let join = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    let required = |schema: &Value| -> BTreeSet<String> {
        let fields = schema["required"].as_array().into_iter().flatten();
        fields
            .filter_map(|f| f.as_str().map(String::from))
            .collect()
    };
    for field in required(ours).difference(&required(upstream)) {
        if allowances.required_elsewhere.contains(&&*join(field)) {
            continue;
        }
        out.problems
            .push(format!("{at}: ours requires {field}, upstream does not"));
    }

    let empty = serde_json::Map::new();
    let upstream_properties = upstream["properties"].as_object().unwrap_or(&empty);
    let our_properties = ours["properties"].as_object().unwrap_or(&empty);
    for (name, schema) in upstream_properties {
        let child = join(name);
        if allowances.refused.contains(&child.as_str()) {
            continue;
        }
        match our_properties.get(name) {
            Some(our_schema) => check_accepts(schema, our_schema, &child, allowances, out),
            None if path.is_empty() && IMPLICIT_ROOT_PROPERTIES.contains(&name.as_str()) => {}
            None => out.problems.push(format!("{child}: missing from ours")),
        }
    }
    for name in our_properties.keys() {
        let child = join(name);
        if !upstream_properties.contains_key(name) && !allowances.ours_only.contains(&&*child) {
            out.problems.push(format!(
                "{child}: ours types a property upstream does not have"
            ));
        }
    }
    for (keyword, suffix) in [("items", "[]"), ("additionalProperties", ".*")] {
        match (&upstream[keyword], &ours[keyword]) {
            (Value::Null, Value::Null) => {}
            (Value::Null, _) => out
                .problems
                .push(format!("{at}: ours has {keyword}, upstream not")),
            (_, Value::Null) => out
                .problems
                .push(format!("{at}: upstream has {keyword}, ours not")),
            (up, our) => check_accepts(up, our, &format!("{path}{suffix}"), allowances, out),
        }
    }
}

/// The names as the API server sees them, its defaults applied.
pub fn names(crd: &Value) -> Value {
    let names = &crd["spec"]["names"];
    let kind = names["kind"].as_str().expect("a kind");
    let or = |field: &str, default: Value| match &names[field] {
        Value::Null => default,
        value => value.clone(),
    };
    json!({
        "kind": kind,
        "plural": names["plural"],
        "singular": or("singular", json!(kind.to_lowercase())),
        "listKind": or("listKind", json!(format!("{kind}List"))),
        "shortNames": or("shortNames", json!([])),
        "categories": or("categories", json!([])),
    })
}

/// A version's printer columns as the API server keeps them (`priority` 0 when unset).
pub fn printer_columns(version: &Value) -> Vec<Value> {
    let columns = version["additionalPrinterColumns"].as_array();
    columns
        .into_iter()
        .flatten()
        .map(|c| {
            json!({
                "name": c["name"],
                "type": c["type"],
                "jsonPath": c["jsonPath"],
                "format": c["format"],
                "priority": c.get("priority").cloned().unwrap_or(json!(0)),
            })
        })
        .collect()
}
