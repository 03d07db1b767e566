//! Errors of parsing and execution. None of them shows a value the template ran over:
//! values are described by kind (`text`, `a map`), so that callers whose values are
//! secrets can pass messages on as they are. Functions a caller adds must do the same.

use std::num::ParseIntError;

use thiserror::Error;

use crate::Limits;
use crate::value::{FuncError, Value};

/// A template that cannot be parsed; the message quotes only the template's text.
#[derive(Error, Debug)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

#[derive(Error, Debug)]
#[error("delimiters must be non-empty and without white space")]
pub struct InvalidDelimiters;

#[derive(Error, Debug)]
pub enum NodeError {
    #[error("invalid character constant")]
    UnquoteError,
    #[error("not a number")]
    NaN,
}

#[derive(Error, Debug)]
pub enum PrintError {
    #[error("unable to process a verb")]
    UnableToProcessVerb,
    #[error("a number that is not a valid character")]
    NotAValidChar,
    #[error("unable to format {0} as %{1}")]
    UnableToFormat(&'static str, char),
    #[error("unable to terminate a format argument")]
    UnableToTerminateFormatArg,
    #[error("missing ] in an argument index")]
    MissingClosingBracket,
    #[error("unable to parse index: {0}")]
    UnableToParseIndex(ParseIntError),
    #[error("unable to parse width: {0}")]
    UnableToParseWidth(ParseIntError),
    #[error("width after index (e.g. %[3]2d)")]
    WithAfterIndex,
    #[error("precision after index (e.g. %[3].2d)")]
    PrecisionAfterIndex,
    #[error("widths and precisions may have at most 3 digits, and no `*`")]
    TooWide,
}

/// Why a template stopped running.
#[derive(Error, Debug)]
pub enum ExecError {
    #[error(
        "exceeded its execution budget ({} steps / {} ms); simplify the template",
        .0.max_steps,
        .0.deadline.as_millis()
    )]
    BudgetExceeded(Limits),
    #[error("map has no entry for key {0:?}")]
    MissingKey(String),
    #[error("{0}")]
    Write(#[from] std::io::Error),
    #[error("cannot range over {0}")]
    InvalidRange(&'static str),
    #[error("cannot evaluate command: {0}")]
    CannotEvaluateCommand(String),
    #[error("{0} has arguments but cannot be invoked as function")]
    NotAFunctionButArguments(String),
    #[error("indirection through explicit nil in {0}")]
    NullInChain(String),
    #[error("cannot handle {0} as argument")]
    InvalidArgument(String),
    #[error("{0} is not a defined function")]
    UndefinedFunction(String),
    #[error(transparent)]
    Function(#[from] FuncError),
    #[error("can't give argument to non-function {0}")]
    ArgumentForNonFunction(String),
    #[error("can't evaluate field {0} in {1}")]
    NoFieldFor(String, &'static str),
    #[error("variable {0} not found")]
    VariableNotFound(String),
}

/// What kind of value `value` is, for messages that must not show the value itself.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::NoValue => "no value",
        Value::Nil => "nil",
        Value::Bool(_) => "a boolean",
        Value::String(_) => "text",
        Value::Bytes(_) => "binary data",
        Value::Number(_) => "a number",
        Value::Array(_) => "a list",
        Value::Map(_) | Value::Object(_) => "a map",
        Value::Function(_) => "a function",
    }
}
