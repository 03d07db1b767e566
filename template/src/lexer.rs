//! Splits template text into items, as Go's `text/template/parse` lexer does. Unlike gtmpl's,
//! it runs on the caller's thread, moves back by whole characters (gtmpl's moved by one
//! byte, which looped forever at the end of the text and panicked inside a multi-byte
//! character), takes any delimiters, and counts lines by newline.

use std::fmt;

use crate::Delimiters;

type Pos = usize;

const TRIM_MARKER: char = '-';
const LEFT_COMMENT: &str = "/*";
const RIGHT_COMMENT: &str = "*/";

/// Deepest nesting of parentheses: the parser and executor recurse on each level.
pub const MAX_PAREN_DEPTH: usize = 16;

/// What may follow a backslash in a quoted string. Go's numeric escapes (`\x`, `\u`, `\U`,
/// octal) can produce bytes that are not UTF-8, which a `String` value cannot hold.
const SIMPLE_ESCAPES: &str = "abfnrtv'\"\\";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemType {
    Error,        // error occurred; value is text of error
    Bool,         // boolean constant
    Char,         // printable ASCII character; grab bag for comma etc.
    CharConstant, // character constant
    ColonEquals,  // colon-equals (':=') introducing a declaration
    Eof,
    Field,      // alphanumeric identifier starting with '.'
    Identifier, // alphanumeric identifier not starting with '.'
    LeftDelim,  // left action delimiter
    LeftParen,  // '(' inside action
    Number,     // simple number
    Pipe,       // pipe symbol
    RawString,  // raw quoted string (includes quotes)
    RightDelim, // right action delimiter
    RightParen, // ')' inside action
    Space,      // run of spaces separating arguments
    String,     // quoted string (includes quotes)
    Text,       // plain text
    Variable,   // variable starting with '$', such as '$' or  '$1' or '$hello'
    // Keywords.
    Block,
    Dot,
    Define,
    Else,
    End,
    If,
    Nil,
    Range,
    Template,
    With,
}

fn keyword(word: &str) -> Option<ItemType> {
    Some(match word {
        "." => ItemType::Dot,
        "block" => ItemType::Block,
        "define" => ItemType::Define,
        "end" => ItemType::End,
        "else" => ItemType::Else,
        "if" => ItemType::If,
        "range" => ItemType::Range,
        "nil" => ItemType::Nil,
        "template" => ItemType::Template,
        "with" => ItemType::With,
        _ => return None,
    })
}

#[derive(Debug)]
pub struct Item {
    pub typ: ItemType,
    pub pos: Pos,
    pub val: String,
    pub line: usize,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.typ {
            ItemType::Eof => write!(f, "EOF"),
            _ => write!(f, "{}", self.val),
        }
    }
}

/// The items of a text, ending with an `Eof` or `Error` item.
#[derive(Debug)]
pub struct Lexer {
    items: std::vec::IntoIter<Item>,
}

impl Lexer {
    pub fn new(input: &str, delimiters: &Delimiters) -> Lexer {
        let mut machine = StateMachine {
            input,
            left: &delimiters.left,
            right: &delimiters.right,
            pos: 0,
            start: 0,
            width: 0,
            items: Vec::new(),
            paren_depth: 0,
            lines_counted_to: 0,
            line: 1,
        };
        machine.run();
        Lexer {
            items: machine.items.into_iter(),
        }
    }
}

impl Iterator for Lexer {
    type Item = Item;
    fn next(&mut self) -> Option<Item> {
        self.items.next()
    }
}

struct StateMachine<'a> {
    input: &'a str,
    left: &'a str,
    right: &'a str,
    pos: Pos,
    start: Pos,
    /// Width of the last character read, so that `backup` steps over all of it.
    width: Pos,
    items: Vec<Item>,
    paren_depth: usize,
    /// `line` is the line at byte `lines_counted_to`; items come in order, so counting on
    /// from there keeps line numbers linear in the text's length.
    lines_counted_to: Pos,
    line: usize,
}

#[derive(Debug, Clone, Copy)]
enum State {
    End,
    Text,
    LeftDelim,
    Comment,
    RightDelim,
    InsideAction,
    Space,
    Identifier,
    Field,
    Variable,
    Char,
    Number,
    Quote,
    RawQuote,
}

/// Go's white space in actions and next to trim markers.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

impl StateMachine<'_> {
    fn run(&mut self) {
        let mut state = State::Text;
        loop {
            state = match state {
                State::Text => self.lex_text(),
                State::Comment => self.lex_comment(),
                State::LeftDelim => self.lex_left_delim(),
                State::RightDelim => self.lex_right_delim(),
                State::InsideAction => self.lex_inside_action(),
                State::Space => self.lex_space(),
                State::Identifier => self.lex_identifier(),
                State::Field => self.lex_field_or_variable(ItemType::Field),
                State::Variable => self.lex_field_or_variable(ItemType::Variable),
                State::Char => self.lex_quoted('\'', ItemType::CharConstant),
                State::Number => self.lex_number(),
                State::Quote => self.lex_quoted('"', ItemType::String),
                State::RawQuote => self.lex_raw_quote(),
                State::End => return,
            }
        }
    }

    fn next(&mut self) -> Option<char> {
        let c = self.input[self.pos..].chars().next();
        self.width = c.map_or(0, char::len_utf8);
        self.pos += self.width;
        c
    }

    fn backup(&mut self) {
        self.pos -= self.width;
        self.width = 0;
    }

    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn line_at(&mut self, pos: Pos) -> usize {
        if pos < self.lines_counted_to {
            return 1 + self.input[..pos].matches('\n').count();
        }
        self.line += self.input[self.lines_counted_to..pos].matches('\n').count();
        self.lines_counted_to = pos;
        self.line
    }

    fn emit(&mut self, typ: ItemType) {
        let line = self.line_at(self.start);
        self.items.push(Item {
            typ,
            pos: self.start,
            val: self.input[self.start..self.pos].to_owned(),
            line,
        });
        self.start = self.pos;
    }

    fn ignore(&mut self) {
        self.start = self.pos;
    }

    fn accept(&mut self, valid: &str) -> bool {
        if self.next().is_some_and(|c| valid.contains(c)) {
            return true;
        }
        self.backup();
        false
    }

    fn accept_run(&mut self, valid: &str) {
        while self.accept(valid) {}
    }

    fn errorf(&mut self, msg: &str) -> State {
        let line = self.line_at(self.start);
        self.items.push(Item {
            typ: ItemType::Error,
            pos: self.start,
            val: msg.to_owned(),
            line,
        });
        State::End
    }

    fn rest(&self) -> &str {
        &self.input[self.pos..]
    }

    /// Whether `s` starts with a left trim marker: `-` and a space.
    fn has_left_trim_marker(s: &str) -> bool {
        let mut chars = s.chars();
        chars.next() == Some(TRIM_MARKER) && chars.next().is_some_and(is_space)
    }

    fn lex_text(&mut self) -> State {
        match self.rest().find(self.left) {
            Some(x) => {
                let delim = self.pos + x;
                let trim = Self::has_left_trim_marker(&self.input[delim + self.left.len()..]);
                self.pos = if trim {
                    self.start
                        + self.input[self.start..delim]
                            .trim_end_matches(is_space)
                            .len()
                } else {
                    delim
                };
                if self.pos > self.start {
                    self.emit(ItemType::Text);
                }
                self.pos = delim;
                self.ignore();
                State::LeftDelim
            }
            None => {
                self.pos = self.input.len();
                if self.pos > self.start {
                    self.emit(ItemType::Text);
                }
                self.emit(ItemType::Eof);
                State::End
            }
        }
    }

    /// Whether the text at the current position is a right delimiter, and whether a trim
    /// marker (a space and `-`) comes before it.
    fn at_right_delim(&self) -> (bool, bool) {
        let rest = self.rest();
        if rest.starts_with(self.right) {
            return (true, false);
        }
        let mut chars = rest.chars();
        if chars.next().is_some_and(is_space)
            && chars.next() == Some(TRIM_MARKER)
            && chars.as_str().starts_with(self.right)
        {
            return (true, true);
        }
        (false, false)
    }

    /// Skips the trim marker and the space after it (space and marker are one byte each).
    const TRIM_MARKER_LEN: usize = 2;

    fn lex_left_delim(&mut self) -> State {
        self.pos += self.left.len();
        let trim = Self::has_left_trim_marker(self.rest());
        let after_marker = if trim { Self::TRIM_MARKER_LEN } else { 0 };
        if self.input[self.pos + after_marker..].starts_with(LEFT_COMMENT) {
            self.pos += after_marker;
            self.ignore();
            State::Comment
        } else {
            self.emit(ItemType::LeftDelim);
            self.pos += after_marker;
            self.ignore();
            self.paren_depth = 0;
            State::InsideAction
        }
    }

    fn lex_comment(&mut self) -> State {
        self.pos += LEFT_COMMENT.len();
        let Some(i) = self.rest().find(RIGHT_COMMENT) else {
            return self.errorf("unclosed comment");
        };
        self.pos += i + RIGHT_COMMENT.len();
        let (delim, trim) = self.at_right_delim();
        if !delim {
            return self.errorf("comment ends before the closing delimiter");
        }
        if trim {
            self.pos += Self::TRIM_MARKER_LEN;
        }
        self.pos += self.right.len();
        if trim {
            self.pos = self.input.len() - self.rest().trim_start_matches(is_space).len();
        }
        self.ignore();
        State::Text
    }

    fn lex_right_delim(&mut self) -> State {
        let (_, trim) = self.at_right_delim();
        if trim {
            self.pos += Self::TRIM_MARKER_LEN;
            self.ignore();
        }
        self.pos += self.right.len();
        self.emit(ItemType::RightDelim);
        if trim {
            self.pos = self.input.len() - self.rest().trim_start_matches(is_space).len();
            self.ignore();
        }
        State::Text
    }

    fn lex_inside_action(&mut self) -> State {
        let (delim, _) = self.at_right_delim();
        if delim {
            if self.paren_depth == 0 {
                return State::RightDelim;
            }
            return self.errorf("unclosed left paren");
        }
        let Some(c) = self.next() else {
            return self.errorf("unclosed action");
        };
        match c {
            '"' => State::Quote,
            '`' => State::RawQuote,
            '$' => State::Variable,
            '\'' => State::Char,
            '(' if self.paren_depth == MAX_PAREN_DEPTH => {
                self.errorf("parentheses nest too deeply")
            }
            '(' => {
                self.emit(ItemType::LeftParen);
                self.paren_depth += 1;
                State::InsideAction
            }
            ')' => {
                if self.paren_depth == 0 {
                    return self.errorf("unexpected right paren");
                }
                self.emit(ItemType::RightParen);
                self.paren_depth -= 1;
                State::InsideAction
            }
            ':' => match self.next() {
                Some('=') => {
                    self.emit(ItemType::ColonEquals);
                    State::InsideAction
                }
                _ => self.errorf("expected :="),
            },
            '|' => {
                self.emit(ItemType::Pipe);
                State::InsideAction
            }
            '.' => match self.peek() {
                Some('0'..='9') => {
                    self.backup();
                    State::Number
                }
                _ => State::Field,
            },
            '+' | '-' | '0'..='9' => {
                self.backup();
                State::Number
            }
            c if is_space(c) => {
                self.backup();
                State::Space
            }
            c if c.is_alphanumeric() || c == '_' => {
                self.backup();
                State::Identifier
            }
            c if c.is_ascii() && !c.is_ascii_control() => {
                self.emit(ItemType::Char);
                State::InsideAction
            }
            c => self.errorf(&format!("unrecognized character in action: {c:?}")),
        }
    }

    /// A run of spaces. The last one may begin a trim-marked right delimiter: it is left
    /// to that delimiter.
    fn lex_space(&mut self) -> State {
        let mut spaces = 0;
        while self.peek().is_some_and(is_space) {
            self.next();
            spaces += 1;
        }
        self.pos -= 1;
        let (delim, trim) = self.at_right_delim();
        if delim && trim {
            if spaces == 1 {
                return State::RightDelim;
            }
        } else {
            self.pos += 1;
        }
        self.emit(ItemType::Space);
        State::InsideAction
    }

    fn scan_word(&mut self) {
        while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            self.next();
        }
    }

    fn lex_identifier(&mut self) -> State {
        self.scan_word();
        if !self.at_terminator() {
            return self.bad_character();
        }
        let word = &self.input[self.start..self.pos];
        let typ = match word {
            "true" | "false" => ItemType::Bool,
            word => keyword(word).unwrap_or(ItemType::Identifier),
        };
        self.emit(typ);
        State::InsideAction
    }

    fn lex_field_or_variable(&mut self, typ: ItemType) -> State {
        if self.at_terminator() {
            self.emit(match typ {
                ItemType::Variable => ItemType::Variable,
                _ => ItemType::Dot,
            });
            return State::InsideAction;
        }
        self.scan_word();
        if !self.at_terminator() {
            return self.bad_character();
        }
        self.emit(typ);
        State::InsideAction
    }

    fn bad_character(&mut self) -> State {
        let c = self.peek().unwrap_or_default();
        self.errorf(&format!("bad character {c:?}"))
    }

    fn at_terminator(&self) -> bool {
        match self.peek() {
            Some('.' | ',' | '|' | ':' | ')' | '(') => true,
            Some(c) if is_space(c) => true,
            Some(c) => self.right.starts_with(c),
            None => false,
        }
    }

    /// A quoted string or character constant; only simple escapes are accepted.
    fn lex_quoted(&mut self, quote: char, typ: ItemType) -> State {
        loop {
            match self.next() {
                Some('\\') => match self.next() {
                    Some(c) if SIMPLE_ESCAPES.contains(c) => {}
                    _ => {
                        return self.errorf(
                            "unsupported escape: use one of \\n \\t \\r \\b \\f \\v \\a \\' \\\" \\\\ \
                             or the character itself",
                        );
                    }
                },
                Some('\n') | None => return self.errorf("unterminated quoted string"),
                Some(c) if c == quote => break,
                Some(_) => {}
            }
        }
        self.emit(typ);
        State::InsideAction
    }

    fn lex_number(&mut self) -> State {
        if self.scan_number() {
            self.emit(ItemType::Number);
            State::InsideAction
        } else {
            let msg = format!("bad number syntax: {}", &self.input[self.start..self.pos]);
            self.errorf(&msg)
        }
    }

    fn scan_number(&mut self) -> bool {
        self.accept("+-");
        let digits = "0123456789";
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if self.accept("eE") {
            self.accept("+-");
            self.accept_run(digits);
        }
        if self.peek().is_none_or(char::is_alphanumeric) {
            self.next();
            return false;
        }
        true
    }

    fn lex_raw_quote(&mut self) -> State {
        match self.rest().find('`') {
            Some(i) => {
                self.pos += i + 1;
                self.emit(ItemType::RawString);
                State::InsideAction
            }
            None => self.errorf("unterminated raw quoted string"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(text: &str) -> Vec<(ItemType, String)> {
        Lexer::new(text, &Delimiters::default())
            .map(|item| (item.typ, item.val))
            .collect()
    }

    fn joined(text: &str) -> String {
        items(text).into_iter().map(|(_, val)| val).collect()
    }

    #[test]
    fn items_cover_the_text_with_trim_markers_removed() {
        for text in [
            "something {{ if eq \"foo\" \"bar\" }}",
            "something {{  .foo_bar  }}",
            "a {{ `}}` }} {{ '}' }} {{ \"k}}\" }}",
        ] {
            assert_eq!(joined(text), text);
        }
        assert_eq!(
            joined("something \n{{- .foo -}}\t 2000"),
            "something{{.foo}}2000"
        );
        assert_eq!(joined("something {{- /* foo */ -}} 2000"), "something2000");
        assert_eq!(joined("café \u{a0}{{- .x }}"), "café \u{a0}{{.x }}");
        // Without white space next to it, `-` is a minus sign, as in Go.
        assert_eq!(joined("{{-1}} {{ 2-}}"), "{{-1}} {{ 2-}}");
    }

    #[test]
    fn the_end_of_the_text_ends_every_state() {
        for text in [
            "{{ .x  ", "{{ .x", "{{ $", "{{ \"a", "{{ 'a", "{{ `a", "{{ 1", "{{/*",
        ] {
            let last = items(text).pop().unwrap();
            assert_eq!(last.0, ItemType::Error, "{text}");
        }
    }

    #[test]
    fn errors_carry_the_line_of_the_newline_count() {
        let last = Lexer::new("a\n\n{{ .x\n }} {{ \"", &Delimiters::default())
            .last()
            .unwrap();
        assert_eq!((last.typ, last.line), (ItemType::Error, 4));
        assert_eq!(last.val, "unterminated quoted string");
    }

    #[test]
    fn other_delimiters_work_the_same() {
        let delimiters = Delimiters::new("<%", "%>").unwrap();
        let items: Vec<_> = Lexer::new("a {{ x }} <%- .y -%> b", &delimiters)
            .map(|item| item.val)
            .collect();
        assert_eq!(items, ["a {{ x }}", "<%", ".y", "%>", "b", ""]);
    }
}
