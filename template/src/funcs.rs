//! Go's builtin template functions. `and` and `or` evaluate all their arguments, as Go
//! did before 1.18. Errors describe arguments by kind, never by value.

use std::borrow::Cow;
use std::cmp::Ordering;

use percent_encoding::{AsciiSet, CONTROLS, percent_encode};

use crate::error::kind;
use crate::printf::sprintf;
use crate::utils::is_true;
use crate::value::{Func, FuncError, Value};

const QUERY_ENCODE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'#')
    .add(b'`')
    .add(b'?')
    .add(b'{')
    .add(b'}');

/// Go's builtins, by name.
pub const BUILTINS: &[(&str, Func)] = &[
    ("eq", eq),
    ("ne", ne),
    ("lt", lt),
    ("le", le),
    ("gt", gt),
    ("ge", ge),
    ("len", len),
    ("and", and),
    ("or", or),
    ("not", not),
    ("urlquery", urlquery),
    ("print", print),
    ("println", println),
    ("printf", printf),
    ("index", index),
    ("call", call),
];

fn generic(message: String) -> FuncError {
    FuncError::Generic(message)
}

/// The first true argument, or the last one.
fn or(args: &[Value]) -> Result<Value, FuncError> {
    args.iter()
        .find(|arg| is_true(arg))
        .or(args.last())
        .cloned()
        .ok_or_else(|| FuncError::AtLeastXArgs("or".into(), 1))
}

/// The first false argument, or the last one.
fn and(args: &[Value]) -> Result<Value, FuncError> {
    args.iter()
        .find(|arg| !is_true(arg))
        .or(args.last())
        .cloned()
        .ok_or_else(|| FuncError::AtLeastXArgs("and".into(), 1))
}

fn not(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [arg] => Ok(Value::from(!is_true(arg))),
        _ => Err(FuncError::ExactlyXArgs("not".into(), 1)),
    }
}

/// The length of a string (in bytes, as in Go), a list or a map.
fn len(args: &[Value]) -> Result<Value, FuncError> {
    let [arg] = args else {
        return Err(FuncError::ExactlyXArgs("len".into(), 1));
    };
    let len = match arg {
        Value::String(s) => s.len(),
        Value::Bytes(b) => b.len(),
        Value::Array(a) => a.len(),
        Value::Object(o) | Value::Map(o) => o.len(),
        other => return Err(generic(format!("len of {}", kind(other)))),
    };
    Ok(Value::from(len))
}

/// Calls the function that is the first argument with the others.
fn call(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [] => Err(FuncError::AtLeastXArgs("call".into(), 1)),
        [Value::Function(f), rest @ ..] => (f.f)(rest),
        [other, ..] => Err(generic(format!(
            "call of {}: the first argument must be a function",
            kind(other)
        ))),
    }
}

/// Go's `fmt.Sprint`: spaces between operands when neither is a string.
fn print(args: &[Value]) -> Result<Value, FuncError> {
    let mut out = Vec::new();
    let mut previous_was_string = true;
    for val in args {
        let is_string = val.as_bytes().is_some();
        if !is_string && !previous_was_string {
            out.push(b' ');
        }
        out.extend_from_slice(&printed(val));
        previous_was_string = is_string;
    }
    Ok(Value::from_bytes(out))
}

/// Go's `fmt.Sprintln`: spaces between all operands and a newline at the end.
fn println(args: &[Value]) -> Result<Value, FuncError> {
    let mut out = args.iter().map(printed).collect::<Vec<_>>().join(&b' ');
    out.push(b'\n');
    Ok(Value::from_bytes(out))
}

/// A value as `print` writes it: a string's bytes as they are.
fn printed(val: &Value) -> Cow<'_, [u8]> {
    match val.as_bytes() {
        Some(bytes) => Cow::Borrowed(bytes),
        None => Cow::Owned(val.to_string().into_bytes()),
    }
}

pub fn printf(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [] => Err(FuncError::AtLeastXArgs("printf".into(), 1)),
        [Value::String(format), rest @ ..] => sprintf(format, rest)
            .map(Value::from_bytes)
            .map_err(|e| generic(format!("printf: {e}"))),
        [other, ..] => Err(generic(format!(
            "printf: the format must be text, not {}",
            kind(other)
        ))),
    }
}

/// `index x 1 2` is Go's `x[1][2]`; a map's missing key gives no value.
pub(crate) fn index(args: &[Value]) -> Result<Value, FuncError> {
    let [collection, keys @ ..] = args else {
        return Err(FuncError::AtLeastXArgs("index".into(), 2));
    };
    index_of(collection, keys)
}

/// [`index`] of a collection the caller keeps (the executor indexes `$` or `.` in place).
pub(crate) fn index_of(collection: &Value, keys: &[Value]) -> Result<Value, FuncError> {
    if keys.is_empty() {
        return Err(FuncError::AtLeastXArgs("index".into(), 2));
    }
    let mut item = collection;
    for key in keys {
        item = get_item(item, key)?;
    }
    Ok(item.clone())
}

fn get_item<'a>(collection: &'a Value, key: &Value) -> Result<&'a Value, FuncError> {
    match (collection, key) {
        (Value::Array(a), Value::Number(n)) => n
            .as_u64()
            .and_then(|i| a.get(usize::try_from(i).ok()?))
            .ok_or_else(|| generic("index out of range".into())),
        (Value::Map(o), Value::String(s)) => Ok(o.get(s).unwrap_or(&Value::NoValue)),
        // Keys are text: no byte string is one.
        (Value::Map(_), Value::Bytes(_)) => Ok(&Value::NoValue),
        (Value::Object(o), Value::String(s)) => o
            .get(s)
            .ok_or_else(|| generic("index of a missing field".into())),
        (collection, key) => Err(generic(format!(
            "cannot index {} with {}",
            kind(collection),
            kind(key)
        ))),
    }
}

fn urlquery(args: &[Value]) -> Result<Value, FuncError> {
    let [arg] = args else {
        return Err(FuncError::ExactlyXArgs("urlquery".into(), 1));
    };
    match arg.as_bytes() {
        Some(bytes) => Ok(Value::from(percent_encode(bytes, QUERY_ENCODE).to_string())),
        None => Err(generic(format!(
            "urlquery of {}: the argument must be a string",
            kind(arg)
        ))),
    }
}

/// Whether the first argument equals any of the others, as in Go.
fn eq(args: &[Value]) -> Result<Value, FuncError> {
    let [first, rest @ ..] = args else {
        return Err(FuncError::AtLeastXArgs("eq".into(), 2));
    };
    if rest.is_empty() {
        return Err(FuncError::AtLeastXArgs("eq".into(), 2));
    }
    Ok(Value::from(rest.iter().any(|x| x == first)))
}

fn ne(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [a, b] => Ok(Value::from(a != b)),
        _ => Err(FuncError::ExactlyXArgs("ne".into(), 2)),
    }
}

fn lt(args: &[Value]) -> Result<Value, FuncError> {
    compare("lt", args, |o| o == Ordering::Less)
}

fn le(args: &[Value]) -> Result<Value, FuncError> {
    compare("le", args, |o| o != Ordering::Greater)
}

fn gt(args: &[Value]) -> Result<Value, FuncError> {
    compare("gt", args, |o| o == Ordering::Greater)
}

fn ge(args: &[Value]) -> Result<Value, FuncError> {
    compare("ge", args, |o| o != Ordering::Less)
}

fn compare(
    name: &str,
    args: &[Value],
    holds: impl Fn(Ordering) -> bool,
) -> Result<Value, FuncError> {
    let [a, b] = args else {
        return Err(FuncError::ExactlyXArgs(name.into(), 2));
    };
    cmp(a, b).map(|o| Value::from(holds(o))).ok_or_else(|| {
        generic(format!(
            "{name}: cannot compare {} with {}",
            kind(a),
            kind(b)
        ))
    })
}

fn cmp(left: &Value, right: &Value) -> Option<Ordering> {
    match (left, right) {
        (Value::Number(l), Value::Number(r)) => {
            if let (Some(li), Some(ri)) = (l.as_i64(), r.as_i64()) {
                return Some(li.cmp(&ri));
            }
            if let (Some(lu), Some(ru)) = (l.as_u64(), r.as_u64()) {
                return Some(lu.cmp(&ru));
            }
            as_f64(l)?.partial_cmp(&as_f64(r)?)
        }
        (Value::Bool(l), Value::Bool(r)) => Some(l.cmp(r)),
        (Value::String(_) | Value::Bytes(_), Value::String(_) | Value::Bytes(_)) => {
            Some(left.as_bytes()?.cmp(right.as_bytes()?))
        }
        _ => None,
    }
}

#[expect(
    clippy::cast_precision_loss,
    reason = "Go compares mixed numbers as floats"
)]
fn as_f64(n: &crate::value::Number) -> Option<f64> {
    n.as_f64()
        .or_else(|| n.as_i64().map(|i| i as f64))
        .or_else(|| n.as_u64().map(|u| u as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: impl Into<Value>) -> Value {
        x.into()
    }

    #[test]
    fn comparisons() {
        assert_eq!(eq(&[v(1), v(2), v(1)]).unwrap(), v(true));
        assert_eq!(ne(&[v("a"), v("a")]).unwrap(), v(false));
        assert_eq!(lt(&[v(1), v(1.5)]).unwrap(), v(true));
        assert_eq!(le(&[v(-1), v(-1)]).unwrap(), v(true));
        assert_eq!(gt(&[v("b"), v("a")]).unwrap(), v(true));
        assert_eq!(ge(&[v(u64::MAX), v(-1)]).unwrap(), v(true));
        assert!(eq(&[v(1)]).is_err());
    }

    #[test]
    fn logic() {
        assert_eq!(and(&[v(1), v(0), v(2)]).unwrap(), v(0));
        assert_eq!(and(&[v(1), v("x")]).unwrap(), v("x"));
        assert_eq!(or(&[v(0), v(""), v("y")]).unwrap(), v("y"));
        assert_eq!(or(&[v(0), v("")]).unwrap(), v(""));
        assert_eq!(not(&[v("")]).unwrap(), v(true));
    }

    #[test]
    fn printing() {
        assert_eq!(print(&[v("a"), v(1), v(2), v("b")]).unwrap(), v("a1 2b"));
        assert_eq!(println(&[v("a"), v(1)]).unwrap(), v("a 1\n"));
        assert_eq!(
            printf(&[v("%d%% %s|%5.2f"), v(3), v("x"), v(1.5)]).unwrap(),
            v("3% x| 1.50")
        );
        assert_eq!(urlquery(&[v("a b?")]).unwrap(), v("a%20b%3F"));
    }

    #[test]
    fn indexing() {
        let list = v(vec![v(10), v(20)]);
        assert_eq!(index(&[list.clone(), v(1)]).unwrap(), v(20));
        assert!(index(&[list, v(2)]).is_err());
        let map = Value::Map([("k".to_string(), v("x"))].into());
        assert_eq!(index(&[map.clone(), v("k")]).unwrap(), v("x"));
        assert_eq!(index(&[map, v("nope")]).unwrap(), Value::NoValue);
        assert_eq!(len(&[v("añ")]).unwrap(), v(3));
    }

    #[test]
    fn errors_describe_values_by_kind_only() {
        let secret = v("hunter2");
        for result in [
            lt(&[secret.clone(), v(1)]),
            len(&[v(3)]),
            index(&[secret.clone(), v(1)]),
            call(std::slice::from_ref(&secret)),
            printf(&[v("%d"), secret.clone()]),
            urlquery(&[v(vec![secret])]),
        ] {
            let message = result.unwrap_err().to_string();
            assert!(!message.contains("hunter2"), "{message}");
        }
    }
}
