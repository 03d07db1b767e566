//! The values templates run over: gtmpl_value's kinds, plus byte strings, since a Go string
//! may hold any bytes (a binary secret, the output of `b64dec`). Numbers and function errors
//! are still gtmpl_value's.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

pub use gtmpl_value::{FuncError, Number};

/// A template function: its arguments, the piped value last.
pub type Func = fn(&[Value]) -> Result<Value, FuncError>;

/// A [`Func`] held as a value (a map's member, `call`'s first argument).
#[derive(Clone)]
pub struct Function {
    pub f: Func,
}

impl PartialEq for Function {
    fn eq(&self, other: &Function) -> bool {
        std::ptr::fn_addr_eq(self.f, other.f)
    }
}

impl fmt::Debug for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Function")
    }
}

#[derive(Clone, Debug)]
pub enum Value {
    NoValue,
    Nil,
    Bool(bool),
    /// A string that is UTF-8 text.
    String(String),
    /// A string that is not UTF-8 text. Make one with [`Value::from_bytes`], which gives
    /// [`Value::String`] for text, so that either compares equal to the other by bytes.
    Bytes(Vec<u8>),
    Object(HashMap<String, Value>),
    Map(HashMap<String, Value>),
    Array(Vec<Value>),
    Function(Function),
    Number(Number),
}

impl Value {
    pub fn from<T: Into<Value>>(t: T) -> Self {
        t.into()
    }

    /// A string of these bytes: text when they are UTF-8, else a byte string.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        match String::from_utf8(bytes) {
            Ok(text) => Value::String(text),
            Err(e) => Value::Bytes(e.into_bytes()),
        }
    }

    /// The bytes of a string, text or not.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::String(s) => Some(s.as_bytes()),
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// Strings are equal when their bytes are, as in Go.
impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        if let (Some(a), Some(b)) = (self.as_bytes(), other.as_bytes()) {
            return a == b;
        }
        match (self, other) {
            (Value::NoValue, Value::NoValue) | (Value::Nil, Value::Nil) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Object(a), Value::Object(b)) | (Value::Map(a), Value::Map(b)) => a == b,
            (Value::Array(a), Value::Array(b)) => a == b,
            (Value::Function(a), Value::Function(b)) => a == b,
            (Value::Number(a), Value::Number(b)) => a == b,
            _ => false,
        }
    }
}

/// As gtmpl_value prints values. A byte string prints its bytes that are not UTF-8 as
/// U+FFFD: only the executor writes them raw.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::NoValue => f.write_str("<no value>"),
            Value::Nil => f.write_str("nil"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::String(s) => f.write_str(s),
            Value::Bytes(b) => f.write_str(&String::from_utf8_lossy(b)),
            Value::Function(_) => f.write_str("Function"),
            Value::Number(n) => write!(f, "{n}"),
            Value::Array(a) => write!(f, "{a:?}"),
            Value::Object(o) | Value::Map(o) => write!(f, "{o:?}"),
        }
    }
}

macro_rules! from_number {
    ($($ty:ty)*) => {
        $(impl From<$ty> for Value {
            fn from(n: $ty) -> Self {
                Value::Number(n.into())
            }
        })*
    };
}

from_number!(i8 i16 i32 i64 isize u8 u16 u32 u64 usize f32 f64);

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<&String> for Value {
    fn from(s: &String) -> Self {
        Value::String(s.clone())
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<Cow<'_, str>> for Value {
    fn from(s: Cow<'_, str>) -> Self {
        Value::String(s.into_owned())
    }
}

impl From<Func> for Value {
    fn from(f: Func) -> Self {
        Value::Function(Function { f })
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(items: Vec<T>) -> Self {
        Value::Array(items.into_iter().map(Into::into).collect())
    }
}

impl<T: Into<Value> + Clone> From<&[T]> for Value {
    fn from(items: &[T]) -> Self {
        Value::Array(items.iter().cloned().map(Into::into).collect())
    }
}

impl<T: Into<Value>> From<HashMap<String, T>> for Value {
    fn from(map: HashMap<String, T>) -> Self {
        Value::Map(map.into_iter().map(|(k, v)| (k, v.into())).collect())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::NoValue, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_compare_by_bytes_whichever_form_they_take() {
        assert_eq!(Value::from_bytes(b"abc".to_vec()), Value::from("abc"));
        assert_eq!(Value::Bytes(b"abc".to_vec()), Value::from("abc"));
        assert!(matches!(Value::from_bytes(vec![0xff]), Value::Bytes(_)));
        assert_ne!(Value::from_bytes(vec![0xff]), Value::from("\u{fffd}"));
        assert_ne!(Value::from("1"), Value::from(1));
    }
}
