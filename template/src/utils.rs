use crate::value::Value;

/// The one character of a character constant such as `'a'` or `'\n'`.
pub fn unquote_char(s: &str) -> Option<char> {
    let mut chars = unquote_str(s)?.chars().collect::<Vec<_>>().into_iter();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

/// The text of a quoted string, with the simple escapes the lexer accepts decoded.
pub fn unquote_str(s: &str) -> Option<String> {
    let quote = s.chars().next()?;
    let raw = s.strip_prefix(quote)?.strip_suffix(quote)?;
    let mut text = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        text.push(match chars.next()? {
            'a' => '\u{7}',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\u{b}',
            c @ ('\\' | '\'' | '"') => c,
            _ => return None,
        });
    }
    Some(text)
}

/// Go's truth: false, zero, nil, and empty text or collections are false.
pub fn is_true(val: &Value) -> bool {
    match val {
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Bytes(b) => !b.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) | Value::Map(o) => !o.is_empty(),
        Value::Function(_) => true,
        Value::NoValue | Value::Nil => false,
        Value::Number(n) => {
            !(n.as_u64() == Some(0) || n.as_i64() == Some(0) || n.as_f64() == Some(0.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_escapes_decode_and_others_do_not() {
        assert_eq!(unquote_char("'→'"), Some('→'));
        assert_eq!(unquote_char("'\\n'"), Some('\n'));
        assert_eq!(unquote_char("'→←'"), None);
        assert_eq!(
            unquote_str(r#""a\t\"b\" \\ é\a""#).as_deref(),
            Some("a\t\"b\" \\ é\u{7}")
        );
        assert_eq!(unquote_str(r#""\x41""#), None);
        assert_eq!(unquote_str(r#""\"#), None);
    }

    #[test]
    fn zero_is_false_whatever_its_type() {
        for zero in [Value::from(0u32), Value::from(0i64), Value::from(0.0)] {
            assert!(!is_true(&zero));
        }
        assert!(is_true(&Value::from(-1)) && is_true(&Value::from(0.5)));
    }
}
