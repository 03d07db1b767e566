use std::char;
use std::fmt;

use crate::error::{PrintError, kind};
use crate::printf::{FormatParams, params_to_chars};
use crate::sprig::go_quote;
use crate::value::Value;

/// Print a verb like golang's printf.
pub fn print(p: &FormatParams, typ: char, val: &Value) -> Result<Vec<u8>, PrintError> {
    match val {
        Value::Bytes(bytes) => print_bytes(p, typ, bytes),
        _ => print_text(p, typ, val).map(String::into_bytes),
    }
}

/// The string verbs of a byte string: `%s` and `%v` write its bytes, truncated to the
/// precision and padded to the width in runes, each byte that is not UTF-8 counting as one,
/// as in Go.
fn print_bytes(p: &FormatParams, typ: char, bytes: &[u8]) -> Result<Vec<u8>, PrintError> {
    match typ {
        's' | 'v' => {
            if p.width == 0 && p.precision.is_none() {
                return Ok(bytes.to_vec());
            }
            // The first `precision` runes: their length in bytes, and how many there are.
            let limit = p.precision.unwrap_or(usize::MAX);
            let (mut end, mut runes) = (0, 0);
            'runes: for chunk in bytes.utf8_chunks() {
                let lengths = chunk
                    .valid()
                    .chars()
                    .map(char::len_utf8)
                    .chain(chunk.invalid().iter().map(|_| 1));
                for length in lengths {
                    if runes == limit {
                        break 'runes;
                    }
                    end += length;
                    runes += 1;
                }
            }
            let padding = vec![b' '; p.width.saturating_sub(runes)];
            let body = bytes[..end].to_vec();
            Ok(if p.minus {
                [body, padding]
            } else {
                [padding, body]
            }
            .concat())
        }
        'x' => Ok(printf_x(p, Hexer(bytes)).into_bytes()),
        'X' => Ok(printf_xx(p, Hexer(bytes)).into_bytes()),
        'q' => Ok(printf_generic(p, go_quote(bytes)).into_bytes()),
        _ => Err(PrintError::UnableToFormat("binary data", typ)),
    }
}

fn print_text(p: &FormatParams, typ: char, val: &Value) -> Result<String, PrintError> {
    match *val {
        Value::Number(ref n) if n.as_u64().is_some() => {
            print_integer(p, typ, n.as_u64().unwrap(), val)
        }
        Value::Number(ref n) if n.as_i64().is_some() => {
            print_integer(p, typ, n.as_i64().unwrap(), val)
        }
        Value::Number(ref n) if n.as_f64().is_some() => {
            let f = n.as_f64().unwrap();
            Ok(match typ {
                'e' => printf_e(p, f),
                'E' => printf_ee(p, f),
                'f' | 'F' => printf_generic(p, f),
                _ => return Err(PrintError::UnableToFormat(kind(val), typ)),
            })
        }
        Value::Bool(ref b) => Ok(match typ {
            'v' | 't' => printf_generic(p, b),
            _ => return Err(PrintError::UnableToFormat(kind(val), typ)),
        }),
        Value::String(ref s) => Ok(match typ {
            's' | 'v' => printf_generic(p, s),
            'x' => printf_x(p, Hexer(s.as_bytes())),
            'X' => printf_xx(p, Hexer(s.as_bytes())),
            'q' => printf_generic(p, go_quote(s.as_bytes())),
            _ => return Err(PrintError::UnableToFormat(kind(val), typ)),
        }),
        Value::Array(ref a) => Ok(match typ {
            'v' => {
                let values: Vec<String> = a.iter().map(|v| printf_generic(p, v)).collect();
                let res = format!("[{}]", values.join(" "));
                printf_generic(p, res)
            }
            _ => return Err(PrintError::UnableToFormat(kind(val), typ)),
        }),
        Value::Map(ref m) => Ok(match typ {
            'v' => {
                let values: Vec<String> = m
                    .iter()
                    .map(|(k, v)| {
                        let v_str = printf_generic(p, v);
                        format!("{}:{}", k, v_str)
                    })
                    .collect();
                let res = format!("map[{}]", values.join(" "));
                printf_generic(p, res)
            }
            _ => return Err(PrintError::UnableToFormat(kind(val), typ)),
        }),
        _ => Err(PrintError::UnableToFormat(kind(val), typ)),
    }
}

/// The integer verbs, for unsigned (`u64`) and negative (`i64`) numbers alike.
fn print_integer<I>(p: &FormatParams, typ: char, n: I, val: &Value) -> Result<String, PrintError>
where
    I: Copy + fmt::Display + fmt::Binary + fmt::Octal + fmt::LowerHex + fmt::UpperHex,
    u32: TryFrom<I>,
{
    let as_char = || {
        u32::try_from(n)
            .ok()
            .and_then(char::from_u32)
            .ok_or(PrintError::NotAValidChar)
    };
    Ok(match typ {
        'b' => printf_b(p, n),
        'd' | 'v' => printf_generic(p, n),
        'o' => printf_o(p, n),
        'c' => printf_generic(p, as_char()?),
        'q' => printf_generic(p, format!("'{}'", escape_char(as_char()?))),
        'x' => printf_x(p, n),
        'X' => printf_xx(p, n),
        'U' => printf_generic(p, format!("U+{:X}", n)),
        _ => return Err(PrintError::UnableToFormat(kind(val), typ)),
    })
}

fn printf_b<B: fmt::Binary>(p: &FormatParams, u: B) -> String {
    match params_to_chars(p) {
        ('#', '_', '+', '_', _) => format!("{:+#width$b}", u, width = p.width),
        ('_', '_', '+', '_', _) => format!("{:+width$b}", u, width = p.width),
        ('#', '_', '_', '_', _) => format!("{:#width$b}", u, width = p.width),
        ('#', '0', '+', '_', _) => format!("{:+#0width$b}", u, width = p.width),
        ('_', '0', '+', '_', _) => format!("{:+0width$b}", u, width = p.width),
        ('#', '0', '_', '_', _) => format!("{:#0width$b}", u, width = p.width),
        ('#', '_', '+', '-', _) => format!("{:<+#width$b}", u, width = p.width),
        ('_', '_', '+', '-', _) => format!("{:<+width$b}", u, width = p.width),
        ('#', '_', '_', '-', _) => format!("{:<#width$b}", u, width = p.width),
        ('#', '0', '+', '-', _) => format!("{:<+#0width$b}", u, width = p.width),
        ('_', '0', '+', '-', _) => format!("{:<+0width$b}", u, width = p.width),
        ('#', '0', '_', '-', _) => format!("{:<#0width$b}", u, width = p.width),
        ('_', '0', '_', '_', _) => format!("{:0width$b}", u, width = p.width),
        ('_', '_', '_', '-', _) => format!("{:<width$b}", u, width = p.width),
        (_, _, _, _, _) => format!("{:width$b}", u, width = p.width),
    }
}

fn printf_o<B: fmt::Octal>(p: &FormatParams, u: B) -> String {
    match params_to_chars(p) {
        ('#', '_', '+', '_', _) => format!("{:+#width$o}", u, width = p.width),
        ('_', '_', '+', '_', _) => format!("{:+width$o}", u, width = p.width),
        ('#', '_', '_', '_', _) => format!("{:#width$o}", u, width = p.width),
        ('#', '0', '+', '_', _) => format!("{:+#0width$o}", u, width = p.width),
        ('_', '0', '+', '_', _) => format!("{:+0width$o}", u, width = p.width),
        ('#', '0', '_', '_', _) => format!("{:#0width$o}", u, width = p.width),
        ('#', '_', '+', '-', _) => format!("{:<+#width$o}", u, width = p.width),
        ('_', '_', '+', '-', _) => format!("{:<+width$o}", u, width = p.width),
        ('#', '_', '_', '-', _) => format!("{:<#width$o}", u, width = p.width),
        ('#', '0', '+', '-', _) => format!("{:<+#0width$o}", u, width = p.width),
        ('_', '0', '+', '-', _) => format!("{:<+0width$o}", u, width = p.width),
        ('#', '0', '_', '-', _) => format!("{:<#0width$o}", u, width = p.width),
        ('_', '0', '_', '_', _) => format!("{:0width$o}", u, width = p.width),
        ('_', '_', '_', '-', _) => format!("{:<width$o}", u, width = p.width),
        (_, _, _, _, _) => format!("{:width$o}", u, width = p.width),
    }
}

fn printf_x<B: fmt::LowerHex>(p: &FormatParams, u: B) -> String {
    match params_to_chars(p) {
        ('#', '_', '+', '_', _) => format!("{:+#width$x}", u, width = p.width),
        ('_', '_', '+', '_', _) => format!("{:+width$x}", u, width = p.width),
        ('#', '_', '_', '_', _) => format!("{:#width$x}", u, width = p.width),
        ('#', '0', '+', '_', _) => format!("{:+#0width$x}", u, width = p.width),
        ('_', '0', '+', '_', _) => format!("{:+0width$x}", u, width = p.width),
        ('#', '0', '_', '_', _) => format!("{:#0width$x}", u, width = p.width),
        ('#', '_', '+', '-', _) => format!("{:<+#width$x}", u, width = p.width),
        ('_', '_', '+', '-', _) => format!("{:<+width$x}", u, width = p.width),
        ('#', '_', '_', '-', _) => format!("{:<#width$x}", u, width = p.width),
        ('#', '0', '+', '-', _) => format!("{:<+#0width$x}", u, width = p.width),
        ('_', '0', '+', '-', _) => format!("{:<+0width$x}", u, width = p.width),
        ('#', '0', '_', '-', _) => format!("{:<#0width$x}", u, width = p.width),
        ('_', '0', '_', '_', _) => format!("{:0width$x}", u, width = p.width),
        ('_', '_', '_', '-', _) => format!("{:<width$x}", u, width = p.width),
        (_, _, _, _, _) => format!("{:width$x}", u, width = p.width),
    }
}

fn printf_xx<B: fmt::UpperHex>(p: &FormatParams, u: B) -> String {
    match params_to_chars(p) {
        ('#', '_', '+', '_', _) => format!("{:+#width$X}", u, width = p.width),
        ('_', '_', '+', '_', _) => format!("{:+width$X}", u, width = p.width),
        ('#', '_', '_', '_', _) => format!("{:#width$X}", u, width = p.width),
        ('#', '0', '+', '_', _) => format!("{:+#0width$X}", u, width = p.width),
        ('_', '0', '+', '_', _) => format!("{:+0width$X}", u, width = p.width),
        ('#', '0', '_', '_', _) => format!("{:#0width$X}", u, width = p.width),
        ('#', '_', '+', '-', _) => format!("{:<+#width$X}", u, width = p.width),
        ('_', '_', '+', '-', _) => format!("{:<+width$X}", u, width = p.width),
        ('#', '_', '_', '-', _) => format!("{:<#width$X}", u, width = p.width),
        ('#', '0', '+', '-', _) => format!("{:<+#0width$X}", u, width = p.width),
        ('_', '0', '+', '-', _) => format!("{:<+0width$X}", u, width = p.width),
        ('#', '0', '_', '-', _) => format!("{:<#0width$X}", u, width = p.width),
        ('_', '0', '_', '_', _) => format!("{:0width$X}", u, width = p.width),
        ('_', '_', '_', '-', _) => format!("{:<width$X}", u, width = p.width),
        (_, _, _, _, _) => format!("{:width$X}", u, width = p.width),
    }
}

fn printf_generic<D: fmt::Display>(p: &FormatParams, c: D) -> String {
    if let Some(pr) = p.precision {
        match params_to_chars(p) {
            ('#', '_', '+', '_', _) => format!("{:+#width$.pr$}", c, width = p.width, pr = pr),
            ('_', '_', '+', '_', _) => format!("{:+width$.pr$}", c, width = p.width, pr = pr),
            ('#', '_', '_', '_', _) => format!("{:#width$.pr$}", c, width = p.width, pr = pr),
            ('#', '0', '+', '_', _) => format!("{:+#0width$.pr$}", c, width = p.width, pr = pr),
            ('_', '0', '+', '_', _) => format!("{:+0width$.pr$}", c, width = p.width, pr = pr),
            ('#', '0', '_', '_', _) => format!("{:#0width$.pr$}", c, width = p.width, pr = pr),
            ('#', '_', '+', '-', _) => format!("{:<+#width$.pr$}", c, width = p.width, pr = pr),
            ('_', '_', '+', '-', _) => format!("{:<+width$.pr$}", c, width = p.width, pr = pr),
            ('#', '_', '_', '-', _) => format!("{:<#width$.pr$}", c, width = p.width, pr = pr),
            ('#', '0', '+', '-', _) => format!("{:<+#0width$.pr$}", c, width = p.width, pr = pr),
            ('_', '0', '+', '-', _) => format!("{:<+0width$.pr$}", c, width = p.width, pr = pr),
            ('#', '0', '_', '-', _) => format!("{:<#0width$.pr$}", c, width = p.width, pr = pr),
            ('_', '0', '_', '_', _) => format!("{:0width$.pr$}", c, width = p.width, pr = pr),
            ('_', '_', '_', '-', _) => format!("{:<width$.pr$}", c, width = p.width, pr = pr),
            (_, _, _, _, _) => format!("{:width$.pr$}", c, width = p.width, pr = pr),
        }
    } else {
        match params_to_chars(p) {
            ('#', '_', '+', '_', _) => format!("{:+#width$}", c, width = p.width),
            ('_', '_', '+', '_', _) => format!("{:+width$}", c, width = p.width),
            ('#', '_', '_', '_', _) => format!("{:#width$}", c, width = p.width),
            ('#', '0', '+', '_', _) => format!("{:+#0width$}", c, width = p.width),
            ('_', '0', '+', '_', _) => format!("{:+0width$}", c, width = p.width),
            ('#', '0', '_', '_', _) => format!("{:#0width$}", c, width = p.width),
            ('#', '_', '+', '-', _) => format!("{:<+#width$}", c, width = p.width),
            ('_', '_', '+', '-', _) => format!("{:<+width$}", c, width = p.width),
            ('#', '_', '_', '-', _) => format!("{:<#width$}", c, width = p.width),
            ('#', '0', '+', '-', _) => format!("{:<+#0width$}", c, width = p.width),
            ('_', '0', '+', '-', _) => format!("{:<+0width$}", c, width = p.width),
            ('#', '0', '_', '-', _) => format!("{:<#0width$}", c, width = p.width),
            ('_', '0', '_', '_', _) => format!("{:0width$}", c, width = p.width),
            ('_', '_', '_', '-', _) => format!("{:<width$}", c, width = p.width),
            (_, _, _, _, _) => format!("{:width$}", c, width = p.width),
        }
    }
}

fn printf_e<E: fmt::LowerExp>(p: &FormatParams, f: E) -> String {
    if let Some(pr) = p.precision {
        match params_to_chars(p) {
            ('#', '_', '+', '_', _) => format!("{:+#width$.pr$e}", f, width = p.width, pr = pr),
            ('_', '_', '+', '_', _) => format!("{:+width$.pr$e}", f, width = p.width, pr = pr),
            ('#', '_', '_', '_', _) => format!("{:#width$.pr$e}", f, width = p.width, pr = pr),
            ('#', '0', '+', '_', _) => format!("{:+#0width$.pr$e}", f, width = p.width, pr = pr),
            ('_', '0', '+', '_', _) => format!("{:+0width$.pr$e}", f, width = p.width, pr = pr),
            ('#', '0', '_', '_', _) => format!("{:#0width$.pr$e}", f, width = p.width, pr = pr),
            ('#', '_', '+', '-', _) => format!("{:<+#width$.pr$e}", f, width = p.width, pr = pr),
            ('_', '_', '+', '-', _) => format!("{:<+width$.pr$e}", f, width = p.width, pr = pr),
            ('#', '_', '_', '-', _) => format!("{:<#width$.pr$e}", f, width = p.width, pr = pr),
            ('#', '0', '+', '-', _) => format!("{:<+#0width$.pr$e}", f, width = p.width, pr = pr),
            ('_', '0', '+', '-', _) => format!("{:<+0width$.pr$e}", f, width = p.width, pr = pr),
            ('#', '0', '_', '-', _) => format!("{:<#0width$.pr$e}", f, width = p.width, pr = pr),
            ('_', '0', '_', '_', _) => format!("{:0width$.pr$e}", f, width = p.width, pr = pr),
            ('_', '_', '_', '-', _) => format!("{:<width$.pr$e}", f, width = p.width, pr = pr),
            (_, _, _, _, _) => format!("{:width$.pr$e}", f, width = p.width, pr = pr),
        }
    } else {
        match params_to_chars(p) {
            ('#', '_', '+', '_', _) => format!("{:+#width$e}", f, width = p.width),
            ('_', '_', '+', '_', _) => format!("{:+width$e}", f, width = p.width),
            ('#', '_', '_', '_', _) => format!("{:#width$e}", f, width = p.width),
            ('#', '0', '+', '_', _) => format!("{:+#0width$e}", f, width = p.width),
            ('_', '0', '+', '_', _) => format!("{:+0width$e}", f, width = p.width),
            ('#', '0', '_', '_', _) => format!("{:#0width$e}", f, width = p.width),
            ('#', '_', '+', '-', _) => format!("{:<+#width$e}", f, width = p.width),
            ('_', '_', '+', '-', _) => format!("{:<+width$e}", f, width = p.width),
            ('#', '_', '_', '-', _) => format!("{:<#width$e}", f, width = p.width),
            ('#', '0', '+', '-', _) => format!("{:<+#0width$e}", f, width = p.width),
            ('_', '0', '+', '-', _) => format!("{:<+0width$e}", f, width = p.width),
            ('#', '0', '_', '-', _) => format!("{:<#0width$e}", f, width = p.width),
            ('_', '0', '_', '_', _) => format!("{:0width$e}", f, width = p.width),
            ('_', '_', '_', '-', _) => format!("{:<width$e}", f, width = p.width),
            (_, _, _, _, _) => format!("{:width$e}", f, width = p.width),
        }
    }
}

fn printf_ee<E: fmt::UpperExp>(p: &FormatParams, f: E) -> String {
    if let Some(pr) = p.precision {
        match params_to_chars(p) {
            ('#', '_', '+', '_', _) => format!("{:+#width$.pr$E}", f, width = p.width, pr = pr),
            ('_', '_', '+', '_', _) => format!("{:+width$.pr$E}", f, width = p.width, pr = pr),
            ('#', '_', '_', '_', _) => format!("{:#width$.pr$E}", f, width = p.width, pr = pr),
            ('#', '0', '+', '_', _) => format!("{:+#0width$.pr$E}", f, width = p.width, pr = pr),
            ('_', '0', '+', '_', _) => format!("{:+0width$.pr$E}", f, width = p.width, pr = pr),
            ('#', '0', '_', '_', _) => format!("{:#0width$.pr$E}", f, width = p.width, pr = pr),
            ('#', '_', '+', '-', _) => format!("{:<+#width$.pr$E}", f, width = p.width, pr = pr),
            ('_', '_', '+', '-', _) => format!("{:<+width$.pr$E}", f, width = p.width, pr = pr),
            ('#', '_', '_', '-', _) => format!("{:<#width$.pr$E}", f, width = p.width, pr = pr),
            ('#', '0', '+', '-', _) => format!("{:<+#0width$.pr$E}", f, width = p.width, pr = pr),
            ('_', '0', '+', '-', _) => format!("{:<+0width$.pr$E}", f, width = p.width, pr = pr),
            ('#', '0', '_', '-', _) => format!("{:<#0width$.pr$E}", f, width = p.width, pr = pr),
            ('_', '0', '_', '_', _) => format!("{:0width$.pr$E}", f, width = p.width, pr = pr),
            ('_', '_', '_', '-', _) => format!("{:<width$.pr$E}", f, width = p.width, pr = pr),
            (_, _, _, _, _) => format!("{:width$.pr$E}", f, width = p.width, pr = pr),
        }
    } else {
        match params_to_chars(p) {
            ('#', '_', '+', '_', _) => format!("{:+#width$E}", f, width = p.width),
            ('_', '_', '+', '_', _) => format!("{:+width$E}", f, width = p.width),
            ('#', '_', '_', '_', _) => format!("{:#width$E}", f, width = p.width),
            ('#', '0', '+', '_', _) => format!("{:+#0width$E}", f, width = p.width),
            ('_', '0', '+', '_', _) => format!("{:+0width$E}", f, width = p.width),
            ('#', '0', '_', '_', _) => format!("{:#0width$E}", f, width = p.width),
            ('#', '_', '+', '-', _) => format!("{:<+#width$E}", f, width = p.width),
            ('_', '_', '+', '-', _) => format!("{:<+width$E}", f, width = p.width),
            ('#', '_', '_', '-', _) => format!("{:<#width$E}", f, width = p.width),
            ('#', '0', '+', '-', _) => format!("{:<+#0width$E}", f, width = p.width),
            ('_', '0', '+', '-', _) => format!("{:<+0width$E}", f, width = p.width),
            ('#', '0', '_', '-', _) => format!("{:<#0width$E}", f, width = p.width),
            ('_', '0', '_', '_', _) => format!("{:0width$E}", f, width = p.width),
            ('_', '_', '_', '-', _) => format!("{:<width$E}", f, width = p.width),
            (_, _, _, _, _) => format!("{:width$E}", f, width = p.width),
        }
    }
}

fn escape_char(c: char) -> String {
    let mut s = c.escape_default().to_string();
    if s.starts_with(r"\u") {
        s = s.replace("{", "").replace("}", "");
    }
    s
}

struct Hexer<'a>(&'a [u8]);

impl<'a> fmt::UpperHex for Hexer<'a> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for u in self.0 {
            write!(f, "{u:02X}")?
        }
        Ok(())
    }
}

impl<'a> fmt::LowerHex for Hexer<'a> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for u in self.0 {
            write!(f, "{u:02x}")?
        }
        Ok(())
    }
}
