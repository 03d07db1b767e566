//! Go's `text/template` language for untrusted templates: parsing, execution under a
//! budget of steps and time, and a reusable set of sprig functions.
//!
//! This crate is a fork of [gtmpl](https://github.com/fiji-flo/gtmpl-rust) 0.7.1 by
//! Florian Dieminger, MIT licensed (see `LICENSE-gtmpl`), which has had no release since
//! 2021. What changed:
//! - [`Value`] has the kinds of [`gtmpl_value`]'s, and byte strings ([`Value::Bytes`]): Go
//!   strings hold any bytes, so binary data and `b64dec` of it pass through to the output
//!   unchanged;
//! - execution counts steps (nodes, commands, arguments, fields, function calls, range
//!   iterations) and stops with [`ExecError::BudgetExceeded`] past [`Limits`];
//! - options: [`Delimiters`], [`MissingKey`] and the [`Functions`] a template may call;
//! - the lexer runs on the caller's thread (gtmpl spawned one per template) and moves back
//!   by whole characters (gtmpl looped forever at the end of an unclosed action and
//!   panicked inside multi-byte characters); lines are counted by newline;
//! - refused instead of mishandled: named templates (`define`, `template`, `block`, which
//!   can recurse until the stack overflows), nesting deeper than [`MAX_BLOCK_DEPTH`] blocks
//!   or [`MAX_PAREN_DEPTH`] parentheses, and numeric escapes in strings (gtmpl looped or
//!   decoded them wrongly);
//! - fixed to behave as Go: ranging over a map visits its keys in order, `else` of a
//!   `range` runs only when there is nothing to range over, raw strings keep backslashes,
//!   trim markers trim only ASCII white space and accept any of it after `-`, actions may
//!   span lines, numeric zero of any type is false, `printf` turns `%%` into `%` and honours
//!   the `0` and `-` flags on their own;
//! - `printf` widths and precisions are bounded, and no error message shows a value;
//! - lookups (`.key`, `$x.a`, `index $ $k`) borrow the data instead of copying all of it
//!   each time (gtmpl copied `.` or `$` whole for each).

mod error;
mod exec;
pub mod formats;
mod funcs;
mod lexer;
mod node;
mod parse;
pub mod pki;
mod print_verb;
mod printf;
pub mod sprig;
mod utils;
mod value;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

pub use error::{ExecError, InvalidDelimiters, ParseError, kind};
pub use funcs::BUILTINS;
pub use lexer::MAX_PAREN_DEPTH;
pub use parse::MAX_BLOCK_DEPTH;
pub use value::{Func, FuncError, Function, Number, Value};

/// How much work one execution may do. Past either limit it stops with
/// [`ExecError::BudgetExceeded`]; the clock is read as steps are counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_steps: u64,
    pub deadline: Duration,
}

impl Default for Limits {
    /// Real templates (a config file, a range over a couple of hundred keys) take a few
    /// thousand steps; the deadline leaves room for a debug build on a loaded machine.
    /// Nested ranges that multiply to millions of iterations stop at whichever limit comes
    /// first.
    fn default() -> Self {
        Limits {
            max_steps: 100_000,
            deadline: Duration::from_millis(500),
        }
    }
}

/// What a field missing from a map gives, as Go's `missingkey` option.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MissingKey {
    /// `<no value>`, as Go's default.
    #[default]
    Default,
    /// An error naming the key, as Go's `missingkey=error`.
    Error,
}

/// The action delimiters, `{{` and `}}` unless set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delimiters {
    left: String,
    right: String,
}

impl Default for Delimiters {
    fn default() -> Self {
        Delimiters {
            left: "{{".into(),
            right: "}}".into(),
        }
    }
}

impl Delimiters {
    /// Refuses empty delimiters and ones with white space, which trim markers could not
    /// be told from.
    pub fn new(left: &str, right: &str) -> Result<Self, InvalidDelimiters> {
        if [left, right]
            .iter()
            .any(|d| d.is_empty() || d.contains(char::is_whitespace))
        {
            return Err(InvalidDelimiters);
        }
        Ok(Delimiters {
            left: left.into(),
            right: right.into(),
        })
    }
}

/// The functions a template may call, by name. A template naming any other fails to parse.
#[derive(Debug, Clone, Default)]
pub struct Functions(BTreeMap<String, Func>);

impl Functions {
    /// Go's builtins (`eq`, `len`, `index`, `printf`, ...).
    pub fn builtins() -> Self {
        Functions::default().with(BUILTINS)
    }

    /// Go's builtins and [`sprig::FUNCTIONS`].
    pub fn sprig() -> Self {
        Functions::builtins().with(sprig::FUNCTIONS)
    }

    /// These and `functions`, which replace any of the same name.
    pub fn with(mut self, functions: &[(&str, Func)]) -> Self {
        self.0
            .extend(functions.iter().map(|&(name, f)| (name.to_owned(), f)));
        self
    }

    /// Only those of these named in `names`.
    pub fn only(mut self, names: &[&str]) -> Self {
        self.0.retain(|name, _| names.contains(&name.as_str()));
        self
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    fn get(&self, name: &str) -> Option<Func> {
        self.0.get(name).copied()
    }
}

/// How a template is parsed and run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub functions: Functions,
    pub missing_key: MissingKey,
    pub delimiters: Delimiters,
    pub limits: Limits,
}

impl Options {
    /// The defaults with Go's builtins, as Go's `template.New` has.
    pub fn builtins() -> Self {
        Options {
            functions: Functions::builtins(),
            ..Options::default()
        }
    }
}

/// A parsed template.
#[derive(Debug)]
pub struct Template {
    root: node::ListNode,
    options: Options,
}

impl Template {
    pub fn parse(text: &str, options: Options) -> Result<Template, ParseError> {
        let root = parse::parse(text, &options.delimiters, &options.functions)?;
        Ok(Template { root, options })
    }

    /// Writes the template's output for `data` to `writer`; on error, what was written
    /// so far stays written.
    pub fn execute(&self, writer: &mut impl Write, data: &Value) -> Result<(), ExecError> {
        exec::execute(self, writer, data)
    }

    /// The template's output for `data` as text, bytes that are not UTF-8 (from
    /// [`Value::Bytes`]) replaced by U+FFFD; [`Template::execute`] writes them as they are.
    pub fn render(&self, data: &Value) -> Result<String, ExecError> {
        let mut out = Vec::new();
        self.execute(&mut out, data)?;
        Ok(String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into()))
    }
}

#[cfg(test)]
mod tests;
