//! YAML documents as trees that remember the line and byte span of every node, so that
//! findings point at the line to fix and edits can replace a value in place; built from
//! `saphyr-parser` events with a budget on aliases.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use saphyr_parser::{Event, Parser, ScalarStyle};
use zeroize::Zeroizing;

/// Most nodes one file may expand to, aliases included: a few "billion laughs" lines must
/// not make the audit build a tree of billions of nodes.
const MAX_NODES_PER_FILE: usize = 2_000_000;

/// A YAML node, the line (1-based) where it starts and the bytes of the source it spans:
/// exact for a plain scalar; a quoted one's starts at its anchor, tag or opening quote and
/// may run past the closing quote to the end of the line; an alias spans the alias.
#[derive(Debug, Clone)]
pub struct Node {
    pub line: usize,
    pub span: Range<usize>,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Entries in document order, keys as nodes (for their lines).
    Map(Vec<(Node, Node)>),
}

/// A scalar's text, which may be a secret value: zeroized on drop and never printed.
#[derive(Clone)]
pub struct Scalar {
    text: Zeroizing<String>,
    /// Plain (unquoted) scalars may be null, booleans or numbers; quoted ones are strings.
    style: ScalarStyle,
}

impl fmt::Debug for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scalar(<redacted>)")
    }
}

impl Scalar {
    /// The text when the scalar is a string (not null, a boolean or a number).
    pub fn as_str(&self) -> Option<&str> {
        if self.style == ScalarStyle::Plain && resolves_to_non_string(&self.text) {
            None
        } else {
            Some(&self.text)
        }
    }

    /// The text whatever its type, e.g. a key, or a number where a name was expected.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn style(&self) -> ScalarStyle {
        self.style
    }
}

/// YAML 1.2 core schema: the plain scalars that are not strings.
fn resolves_to_non_string(text: &str) -> bool {
    matches!(
        text,
        "" | "~"
            | "null"
            | "Null"
            | "NULL"
            | "true"
            | "True"
            | "TRUE"
            | "false"
            | "False"
            | "FALSE"
    ) || text.parse::<f64>().is_ok()
        || text
            .strip_prefix("0x")
            .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
        || text
            .strip_prefix("0o")
            .is_some_and(|o| !o.is_empty() && o.chars().all(|c| c.is_digit(8)))
}

impl Node {
    /// The value under `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, value)| value)
    }

    /// The key node and value under `key` of a mapping.
    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.scalar().is_some_and(|s| s.text() == key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// The node at a path of mapping keys.
    pub fn path(&self, keys: &[&str]) -> Option<&Node> {
        keys.iter().try_fold(self, |node, key| node.get(key))
    }

    pub fn scalar(&self) -> Option<&Scalar> {
        match &self.value {
            Value::Scalar(scalar) => Some(scalar),
            _ => None,
        }
    }

    /// The string at `key`, if it is one.
    pub fn str_at(&self, key: &str) -> Option<&str> {
        self.get(key)?.scalar()?.as_str()
    }

    pub fn entries(&self) -> &[(Node, Node)] {
        match &self.value {
            Value::Map(entries) => entries,
            _ => &[],
        }
    }

    pub fn items(&self) -> &[Node] {
        match &self.value {
            Value::Seq(items) => items,
            _ => &[],
        }
    }

    pub fn is_map(&self) -> bool {
        matches!(self.value, Value::Map(_))
    }

    /// The node as JSON, for typed deserialization (plain scalars resolved as YAML 1.2
    /// does). The result may hold secret values: callers drop it promptly.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as Json;
        match &self.value {
            Value::Scalar(scalar) => match scalar.as_str() {
                Some(text) => Json::String(text.to_string()),
                None => match scalar.text() {
                    "" | "~" | "null" | "Null" | "NULL" => Json::Null,
                    "true" | "True" | "TRUE" => Json::Bool(true),
                    "false" | "False" | "FALSE" => Json::Bool(false),
                    number => serde_json::from_str(number)
                        .unwrap_or_else(|_| Json::String(number.to_string())),
                },
            },
            Value::Seq(items) => Json::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => Json::Object(
                entries
                    .iter()
                    .map(|(k, v)| {
                        let key = k.scalar().map(|s| s.text().to_string()).unwrap_or_default();
                        (key, v.to_json())
                    })
                    .collect(),
            ),
        }
    }
}

/// Why a file is not (entirely) valid YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub reason: String,
}

/// The non-empty documents of a YAML stream, up to the first syntax error (documents before
/// it are kept: they are still audited).
pub fn parse_stream(text: &str) -> (Vec<Node>, Option<SyntaxError>) {
    let mut builder = Builder::default();
    let mut offsets = ByteOffsets::new(text);
    let mut parser = Parser::new_from_str(text);
    let mut documents = Vec::new();
    let failure = loop {
        let Some(next) = parser.next_event() else {
            break None;
        };
        let (event, span) = match next {
            Ok(event) => event,
            Err(error) => {
                break Some(SyntaxError {
                    line: error.marker().line().max(1),
                    reason: error.info().to_string(),
                });
            }
        };
        let bytes = offsets.byte(span.start.index())..offsets.byte(span.end.index());
        match builder.push(event, span.start.line().max(1), bytes) {
            Ok(Some(document)) => documents.push(document),
            Ok(None) => {}
            Err(reason) => {
                break Some(SyntaxError {
                    line: span.start.line().max(1),
                    reason,
                });
            }
        }
    };
    (documents, failure)
}

/// Turns the parser's character indices into byte offsets, walking forward from the last
/// one asked (events come mostly in source order); ASCII text needs no walk.
struct ByteOffsets<'a> {
    text: &'a str,
    ascii: bool,
    /// The last position asked: (character index, byte offset).
    last: (usize, usize),
}

impl<'a> ByteOffsets<'a> {
    fn new(text: &'a str) -> Self {
        ByteOffsets {
            text,
            ascii: text.is_ascii(),
            last: (0, 0),
        }
    }

    fn byte(&mut self, char_index: usize) -> usize {
        if self.ascii {
            return char_index.min(self.text.len());
        }
        if char_index < self.last.0 {
            self.last = (0, 0);
        }
        let (chars, bytes) = self.last;
        let byte = self.text[bytes..]
            .char_indices()
            .nth(char_index - chars)
            .map_or(self.text.len(), |(offset, _)| bytes + offset);
        self.last = (char_index, byte);
        byte
    }
}

/// Assembles nodes from events; `stack` holds the open collections.
#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    anchors: HashMap<usize, (Node, usize)>,
    nodes: usize,
}

struct Open {
    node: Node,
    anchor: usize,
    /// A mapping's key waiting for its value.
    key: Option<Node>,
    size: usize,
}

impl Builder {
    /// Takes one event; returns a document when one is complete.
    fn push(
        &mut self,
        event: Event<'_>,
        line: usize,
        span: Range<usize>,
    ) -> Result<Option<Node>, String> {
        let (node, anchor, size) = match event {
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                let value = if matches!(event, Event::SequenceStart(..)) {
                    Value::Seq(Vec::new())
                } else {
                    Value::Map(Vec::new())
                };
                self.stack.push(Open {
                    node: Node { line, span, value },
                    anchor,
                    key: None,
                    size: 1,
                });
                return self.count(1).map(|()| None);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let mut open = self.stack.pop().ok_or("unbalanced collection")?;
                open.node.span.end = span.end;
                (open.node, open.anchor, open.size)
            }
            Event::Scalar(text, style, anchor, _) => {
                self.count(1)?;
                let scalar = Scalar {
                    text: Zeroizing::new(text.into_owned()),
                    style,
                };
                let node = Node {
                    line,
                    span,
                    value: Value::Scalar(scalar),
                };
                (node, anchor, 1)
            }
            Event::Alias(id) => {
                let (node, size) = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or("alias to an unknown anchor")?;
                self.count(size)?;
                (Node { line, span, ..node }, 0, size)
            }
            Event::DocumentStart(_) => {
                self.anchors.clear();
                return Ok(None);
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {
                return Ok(None);
            }
        };
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        Ok(self.attach(node, size))
    }

    fn count(&mut self, nodes: usize) -> Result<(), String> {
        self.nodes += nodes;
        if self.nodes > MAX_NODES_PER_FILE {
            return Err(format!(
                "more than {MAX_NODES_PER_FILE} nodes once aliases are expanded"
            ));
        }
        Ok(())
    }

    /// Puts a finished node into the open collection, or returns it as a document.
    fn attach(&mut self, node: Node, size: usize) -> Option<Node> {
        let Some(parent) = self.stack.last_mut() else {
            return match &node.value {
                Value::Scalar(s) if s.style == ScalarStyle::Plain && s.text().is_empty() => None,
                _ => Some(node),
            };
        };
        parent.size += size;
        match &mut parent.node.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => match parent.key.take() {
                None => parent.key = Some(node),
                Some(key) => entries.push((key, node)),
            },
            Value::Scalar(_) => unreachable!("scalars are never open"),
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_know_their_lines() {
        let text = "# comment\napiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  password: aHVudGVy\n---\n---\nkind: ConfigMap\n";
        let (documents, error) = parse_stream(text);
        assert_eq!(error, None);
        assert_eq!(documents.len(), 2);
        let secret = &documents[0];
        assert_eq!(secret.str_at("kind"), Some("Secret"));
        let (key, value) = secret.get("data").unwrap().entry("password").unwrap();
        assert_eq!((key.line, value.line), (7, 7));
        assert_eq!(secret.path(&["metadata", "name"]).unwrap().line, 5);
        assert_eq!(documents[1].entry("kind").unwrap().0.line, 10);
    }

    #[test]
    fn scalars_know_their_bytes_after_non_ascii_text() {
        let text =
            "# café ünïcode\na: plain  # comment\nb: 'single'\nc: {d: \"dq\", e: [f]}\ng: *x\n";
        let (documents, error) = parse_stream(text);
        assert!(error.is_some(), "the alias names no anchor");
        assert!(documents.is_empty());
        let text = &text[..text.find("g:").unwrap()];
        let (documents, error) = parse_stream(text);
        assert_eq!(error, None);
        let doc = &documents[0];
        let source = |node: &Node| &text[node.span.clone()];
        assert_eq!(source(doc.get("a").unwrap()), "plain");
        assert!(source(doc.get("b").unwrap()).starts_with("'single'"));
        assert!(source(doc.path(&["c", "d"]).unwrap()).starts_with("\"dq\""));
        assert_eq!(source(&doc.path(&["c", "e"]).unwrap().items()[0]), "f");
    }

    #[test]
    fn plain_scalars_resolve_like_yaml_1_2() {
        let (documents, _) = parse_stream("a: 1\nb: '1'\nc: true\nd: null\ne: ~\nf: text\ng:\n");
        let doc = &documents[0];
        let strings: Vec<_> = ["a", "b", "c", "d", "e", "f", "g"]
            .iter()
            .map(|k| doc.str_at(k))
            .collect();
        assert_eq!(
            strings,
            [None, Some("1"), None, None, None, Some("text"), None]
        );
        assert_eq!(
            doc.to_json(),
            serde_json::json!({"a": 1, "b": "1", "c": true, "d": null, "e": null, "f": "text", "g": null})
        );
    }

    #[test]
    fn documents_before_a_syntax_error_are_kept() {
        let (documents, error) = parse_stream("kind: A\n---\nkind: B\n  bad: [\n");
        assert_eq!(documents.len(), 1);
        let error = error.unwrap();
        assert!(error.line >= 3, "{error:?}");
    }

    #[test]
    fn alias_bombs_are_bounded() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let (_, error) = parse_stream(&text);
        assert!(error.unwrap().reason.contains("aliases"));
    }

    #[test]
    fn debug_output_redacts_scalars() {
        let (documents, _) = parse_stream("password: hunter2\n");
        assert!(!format!("{documents:?}").contains("hunter2"));
    }
}
