//! Go template text checked and made safe for gtmpl 0.7.1, which on some input loops
//! forever, panics, or recurses until the stack overflows and the process aborts.

/// White space that trim markers remove: Go trims ASCII space, tab, CR and LF only.
const SPACE: [char; 4] = [' ', '\t', '\r', '\n'];

/// Deepest nesting of `if`/`range`/`with` blocks and of parentheses. gtmpl's parser and
/// executor recurse, and unoptimised builds overflow a 2 MiB thread stack near 100 of either.
const MAX_BLOCK_DEPTH: usize = 32;
const MAX_PAREN_DEPTH: usize = 16;

/// What may follow a backslash in a quoted string. gtmpl's numeric escapes (`\x`, `\u`,
/// `\U`) can loop forever, panic or decode the following characters wrongly.
const SIMPLE_ESCAPES: &str = "bfnrt'\"\\";

/// `text` with its trim markers (`{{- ` and ` -}}`) applied here instead of by gtmpl, after
/// checking that every action, comment and quoted string closes, that actions hold only
/// ASCII outside quoted strings, that quoted strings hold only simple escapes, and what
/// `check_keyword` checks. Errors give the line.
pub(super) fn normalise(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    let mut trim_next_text = false;
    let mut depth = 0;
    while let Some(found) = text[pos..].find("{{") {
        let open = pos + found;
        let after = &text[open + 2..];
        let left_trim = after.starts_with('-') && after[1..].starts_with(SPACE);
        let body = open + if left_trim { 4 } else { 2 };
        push_text(&mut out, &text[pos..open], trim_next_text, left_trim);

        let comment = text[body..].starts_with("/*");
        let end = if comment {
            comment_end(text, body)?
        } else {
            action_end(text, body)?
        };
        if !comment {
            check_keyword(&text[body..end.content], &mut depth)
                .map_err(|problem| at(text, body, problem))?;
        }
        // The left marker's space is kept, as an action may not start with a comment's `/*`.
        out.push_str(if left_trim && !comment { "{{ " } else { "{{" });
        out.push_str(&text[body..end.content]);
        out.push_str("}}");
        pos = end.resume;
        trim_next_text = end.right_trim;
    }
    push_text(&mut out, &text[pos..], trim_next_text, false);
    Ok(out)
}

/// Copies plain text, trimmed at either end as markers ask. A `{` left touching the next
/// `{{` would merge into it, so it is written as an action instead.
fn push_text(out: &mut String, text: &str, trim_start: bool, trim_end: bool) {
    let text = if trim_start {
        text.trim_start_matches(SPACE)
    } else {
        text
    };
    if !trim_end {
        out.push_str(text);
        return;
    }
    let text = text.trim_end_matches(SPACE);
    match text.strip_suffix('{') {
        Some(rest) => {
            out.push_str(rest);
            out.push_str("{{\"{\"}}");
        }
        None => out.push_str(text),
    }
}

/// How an action or comment ends.
struct End {
    /// Where its body ends, before any right trim marker and the `}}`.
    content: usize,
    /// Where the text after its `}}` starts.
    resume: usize,
    right_trim: bool,
}

/// How the comment whose body starts at `body` (with `/*`) ends.
fn comment_end(text: &str, body: usize) -> Result<End, String> {
    let end = text[body + 2..]
        .find("*/")
        .map(|i| body + 2 + i + 2)
        .ok_or_else(|| at(text, body, "unclosed comment"))?;
    let rest = &text[end..];
    let right_trim = rest.starts_with(SPACE) && rest[1..].starts_with("-}}");
    if rest.starts_with("}}") || right_trim {
        let resume = end + if right_trim { 4 } else { 2 };
        Ok(End {
            content: end,
            resume,
            right_trim,
        })
    } else {
        Err(at(text, end, "comment ends before the closing delimiter"))
    }
}

/// How the action whose body starts at `body` ends: at the first `}}` outside quotes. A
/// right trim marker's space stays in the body, its `-` does not.
fn action_end(text: &str, body: usize) -> Result<End, String> {
    let mut chars = text[body..].char_indices().map(|(i, c)| (body + i, c));
    let mut parens = 0_usize;
    while let Some((i, c)) = chars.next() {
        let checked = match c {
            '}' if text[i..].starts_with("}}") => {
                let right_trim =
                    i >= body + 2 && text[..i].ends_with('-') && text[..i - 1].ends_with(SPACE);
                let content = if right_trim { i - 1 } else { i };
                return Ok(End {
                    content,
                    resume: i + 2,
                    right_trim,
                });
            }
            '"' | '\'' => skip_quoted(&mut chars, c),
            '`' => skip_raw(&mut chars),
            '(' if parens == MAX_PAREN_DEPTH => Err("parentheses nest too deeply"),
            '(' => {
                parens += 1;
                Ok(())
            }
            ')' => {
                parens = parens.saturating_sub(1);
                Ok(())
            }
            c if !c.is_ascii() => Err("non-ASCII character outside a quoted string"),
            _ => Ok(()),
        };
        checked.map_err(|problem| at(text, i, problem))?;
    }
    Err(at(text, body, "unclosed action"))
}

/// Refuses what gtmpl would run into trouble with, by the action's first word: named
/// templates (a template calling itself recurses until the stack overflows), blocks nested
/// too deeply, and `range` over the whole values map, which gtmpl visits in hash order, so
/// output would differ between runs where Go sorts the keys.
fn check_keyword(action: &str, depth: &mut usize) -> Result<(), &'static str> {
    let action = action.trim();
    let word = action
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .next()
        .unwrap_or_default();
    match word {
        "define" | "template" | "block" => {
            Err("named templates (define, template, block) are not supported")
        }
        "if" | "with" | "range" if *depth >= MAX_BLOCK_DEPTH => Err("blocks nest too deeply"),
        "range" if ranges_over_values(&action[word.len()..]) => Err(
            "`range .` would list the values in a different order on each run (Go sorts \
             them, gtmpl does not): use `range $key := keys .` and `index $ $key`",
        ),
        "if" | "with" | "range" => {
            *depth += 1;
            Ok(())
        }
        "end" => {
            *depth = depth.saturating_sub(1);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Whether a range's pipeline (with or without variables) is `.` or `$`.
fn ranges_over_values(pipeline: &str) -> bool {
    let pipeline = pipeline.rsplit(":=").next().unwrap_or(pipeline);
    matches!(pipeline.trim(), "." | "$")
}

/// Skips past the closing `quote` as gtmpl's lexer finds it: a backslash escapes what
/// follows, and one after another backslash keeps the escape (so `"\\"` does not close).
fn skip_quoted(
    chars: &mut impl Iterator<Item = (usize, char)>,
    quote: char,
) -> Result<(), &'static str> {
    let mut escaped = false;
    let mut in_escape = false;
    for (_, c) in chars {
        if in_escape && !SIMPLE_ESCAPES.contains(c) {
            return Err(
                "unsupported escape: use one of \\n \\t \\r \\b \\f \\' \\\" \\\\ or the character itself",
            );
        }
        in_escape = !in_escape && c == '\\';
        match c {
            '\\' => {
                escaped = true;
                continue;
            }
            '\n' => break,
            c if c == quote && !escaped => return Ok(()),
            _ => {}
        }
        escaped = false;
    }
    Err("unterminated quoted string")
}

/// gtmpl reads escapes in raw strings too, where Go keeps backslashes as they are; refusing
/// them keeps the two from disagreeing silently.
fn skip_raw(chars: &mut impl Iterator<Item = (usize, char)>) -> Result<(), &'static str> {
    for (_, c) in chars {
        match c {
            '`' => return Ok(()),
            '\\' => return Err("backslash in a raw string: use a double-quoted string"),
            _ => {}
        }
    }
    Err("unterminated quoted string")
}

fn at(text: &str, index: usize, problem: &str) -> String {
    let line = 1 + text[..index].matches('\n').count();
    format!("line {line}: {problem}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_templates_pass_unchanged() {
        for text in [
            "",
            "no actions",
            "a {{ .x }} b {{ index . \"k}}\" }} {{ '}' }} {{ `}}` }}",
            "{{/* a comment */}}{{-3}} ü {{ \"é\" }}",
            "{{ \"tab\\there \\\"q\\\" \\\\ é\" }} {{ '\\n' }}",
        ] {
            assert_eq!(normalise(text).unwrap(), text);
        }
    }

    #[test]
    fn trim_markers_are_applied_here() {
        assert_eq!(normalise("a \n {{- .x -}} \t b").unwrap(), "a{{ .x }}b");
        assert_eq!(normalise("é {{- .x }}").unwrap(), "é{{ .x }}");
        assert_eq!(normalise("a {{- /* c */ -}} b").unwrap(), "a{{/* c */}}b");
        assert_eq!(
            normalise("{{ .x  -}}\n{{ .y }}").unwrap(),
            "{{ .x  }}{{ .y }}"
        );
        assert_eq!(normalise("{ {{- .x }}").unwrap(), "{{\"{\"}}{{ .x }}");
        // Without white space next to it, `-` is a minus sign, as in Go.
        assert_eq!(normalise("{{-1}} {{ 2-}}").unwrap(), "{{-1}} {{ 2-}}");
    }

    #[test]
    fn unclosed_things_are_refused_with_their_line() {
        for (text, problem) in [
            ("a\n{{ .x ", "line 2: unclosed action"),
            ("{{ \"}} ", "line 1: unterminated quoted string"),
            ("{{ \"a\nb\" }}", "line 1: unterminated quoted string"),
            ("{{ `}} ", "line 1: unterminated quoted string"),
            ("\n\n{{/* ", "line 3: unclosed comment"),
            ("{{/* */ }}", "line 1: comment ends before"),
            ("{{ .x€ }}", "line 1: non-ASCII character"),
            ("{{ \"\\x41\" }}", "line 1: unsupported escape"),
            ("{{ \"\\u00e9\" }}", "line 1: unsupported escape"),
            ("{{ '\\é' }}", "line 1: unsupported escape"),
            ("{{ `a\\b` }}", "line 1: backslash in a raw string"),
            ("a\n{{ template \"x\" }}", "line 2: named templates"),
            ("{{- define \"x\" }}{{ end }}", "line 1: named templates"),
            ("{{ range . }}{{ end }}", "line 1: `range .` would list"),
            (
                "{{ range $k, $v := $ -}}{{ end }}",
                "line 1: `range .` would list",
            ),
        ] {
            let err = normalise(text).unwrap_err();
            assert!(err.starts_with(problem), "{text:?}: {err}");
        }
    }

    /// The limits hold on a test thread's 2 MiB stack; gtmpl alone aborts past about 100.
    #[test]
    fn nesting_is_capped_where_gtmpl_still_copes() {
        let blocks = |n| format!("{}x{}", "{{ if 1 }}".repeat(n), "{{ end }}".repeat(n));
        let parens = |n| format!("{{{{ {}1{} }}}}", "(".repeat(n), ")".repeat(n));
        let both = blocks(MAX_BLOCK_DEPTH).replace('x', &parens(MAX_PAREN_DEPTH));
        let mut template = gtmpl::Template::default();
        template.parse(normalise(&both).unwrap()).unwrap();
        assert_eq!(template.render(&gtmpl::Context::empty()).unwrap(), "1");

        let err = normalise(&blocks(MAX_BLOCK_DEPTH + 1)).unwrap_err();
        assert!(err.contains("blocks nest too deeply"), "{err}");
        let err = normalise(&parens(MAX_PAREN_DEPTH + 1)).unwrap_err();
        assert!(err.contains("parentheses nest too deeply"), "{err}");
        // Sequential blocks are not nested ones.
        assert!(normalise(&"{{ if 1 }}{{ else if 2 }}{{ end }}".repeat(100)).is_ok());
    }
}
