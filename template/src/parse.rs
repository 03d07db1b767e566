//! Builds a template's tree from the lexer's items, as Go's `text/template/parse` does.
//! Named templates (`define`, `template`, `block`) are refused: a template that calls
//! itself recurses until the stack overflows, which no budget can stop in time.

use std::collections::VecDeque;

use crate::error::ParseError;
use crate::lexer::{Item, ItemType, Lexer};
use crate::node::*;
use crate::utils::unquote_str;
use crate::{Delimiters, Functions};

/// Deepest nesting of `if`, `range` and `with`: parsing and execution recurse on each level,
/// and unoptimised builds overflow a 2 MiB thread stack near 100.
pub const MAX_BLOCK_DEPTH: usize = 32;

struct Parser<'a> {
    functions: &'a Functions,
    lex: Lexer,
    line: usize,
    token: VecDeque<Item>,
    /// Variables in scope, innermost last.
    vars: Vec<String>,
    depth: usize,
}

/// The tree of `text`, whose actions may call only `functions`.
pub fn parse(
    text: &str,
    delimiters: &Delimiters,
    functions: &Functions,
) -> Result<ListNode, ParseError> {
    let mut parser = Parser {
        functions,
        lex: Lexer::new(text, delimiters),
        line: 1,
        token: VecDeque::new(),
        vars: vec!["$".to_owned()],
        depth: 0,
    };
    parser.parse()
}

impl Parser<'_> {
    fn backup(&mut self, t: Item) {
        self.token.push_front(t);
    }

    fn backup2(&mut self, t0: Item, t1: Item) {
        self.token.push_front(t1);
        self.token.push_front(t0);
    }

    fn backup3(&mut self, t0: Item, t1: Item, t2: Item) {
        self.token.push_front(t2);
        self.token.push_front(t1);
        self.token.push_front(t0);
    }

    fn next_must(&mut self, context: &str) -> Result<Item, ParseError> {
        let item = self
            .next()
            .ok_or_else(|| self.error_msg(&format!("unexpected end in {context}")))?;
        self.fail_on_error(item)
    }

    /// A lexer error item ends parsing with its message.
    fn fail_on_error(&self, item: Item) -> Result<Item, ParseError> {
        if item.typ == ItemType::Error {
            return Err(ParseError {
                line: item.line,
                message: item.val,
            });
        }
        Ok(item)
    }

    fn next_non_space(&mut self) -> Option<Item> {
        self.find(|c| c.typ != ItemType::Space)
    }

    fn next_non_space_must(&mut self, context: &str) -> Result<Item, ParseError> {
        let item = self
            .next_non_space()
            .ok_or_else(|| self.unexpected("end", context))?;
        self.fail_on_error(item)
    }

    fn peek_non_space_must(&mut self, context: &str) -> Result<&Item, ParseError> {
        let t = self.next_non_space_must(context)?;
        self.backup(t);
        Ok(&self.token[0])
    }

    fn peek(&mut self) -> Option<&Item> {
        let t = self.next()?;
        self.backup(t);
        self.token.front()
    }

    fn error<T>(&self, msg: &str) -> Result<T, ParseError> {
        Err(self.error_msg(msg))
    }

    fn error_msg(&self, msg: &str) -> ParseError {
        ParseError {
            line: self.line,
            message: msg.to_owned(),
        }
    }

    fn expect(&mut self, expected: ItemType, context: &str) -> Result<Item, ParseError> {
        let token = self.next_non_space_must(context)?;
        if token.typ != expected {
            return Err(self.unexpected(&token, context));
        }
        Ok(token)
    }

    fn unexpected(&self, token: impl std::fmt::Display, context: &str) -> ParseError {
        self.error_msg(&format!("unexpected {token} in {context}"))
    }

    fn parse(&mut self) -> Result<ListNode, ParseError> {
        let mut root = ListNode::new(0);
        loop {
            let t = self.next_non_space_must("input")?;
            if t.typ == ItemType::Eof {
                return Ok(root);
            }
            self.backup(t);
            match self.text_or_action()? {
                node @ (Nodes::Else(_) | Nodes::End(_)) => {
                    return self.error(&format!("unexpected {node}"));
                }
                node => root.append(node),
            }
        }
    }

    fn item_list(&mut self) -> Result<(ListNode, Nodes), ParseError> {
        let pos = self.peek_non_space_must("item list")?.pos;
        let mut list = ListNode::new(pos);
        while self.peek_non_space_must("item list")?.typ != ItemType::Eof {
            let node = self.text_or_action()?;
            match *node.typ() {
                NodeType::End | NodeType::Else => return Ok((list, node)),
                _ => list.append(node),
            }
        }
        self.error("unexpected EOF")
    }

    fn text_or_action(&mut self) -> Result<Nodes, ParseError> {
        let item = self.next_non_space_must("input")?;
        match item.typ {
            ItemType::Text => Ok(Nodes::Text(TextNode::new(item.pos, item.val))),
            ItemType::LeftDelim => self.action(),
            _ => Err(self.unexpected(&item, "input")),
        }
    }

    fn action(&mut self) -> Result<Nodes, ParseError> {
        let token = self.next_non_space_must("action")?;
        match token.typ {
            ItemType::Else => return self.else_control(),
            ItemType::End => return self.end_control(),
            ItemType::If => return self.if_control(),
            ItemType::Range => return self.range_control(),
            ItemType::With => return self.with_control(),
            ItemType::Define | ItemType::Template | ItemType::Block => {
                return self.error("named templates (define, template, block) are not supported");
            }
            _ => {}
        }
        let pos = token.pos;
        self.backup(token);
        Ok(Nodes::Action(ActionNode::new(
            pos,
            self.pipeline("command")?,
        )))
    }

    fn parse_control(
        &mut self,
        allow_else_if: bool,
        context: &str,
    ) -> Result<(Pos, PipeNode, ListNode, Option<ListNode>), ParseError> {
        if self.depth == MAX_BLOCK_DEPTH {
            return self.error("blocks nest too deeply");
        }
        self.depth += 1;
        let vars_len = self.vars.len();
        let pipe = self.pipeline(context)?;
        let (list, next) = self.item_list()?;
        let else_list = match *next.typ() {
            NodeType::End => None,
            NodeType::Else => {
                if allow_else_if && self.peek_non_space_must("else if")?.typ == ItemType::If {
                    self.next_must("else if")?;
                    let mut else_list = ListNode::new(next.pos());
                    else_list.append(self.if_control()?);
                    Some(else_list)
                } else {
                    let (else_list, next) = self.item_list()?;
                    if *next.typ() != NodeType::End {
                        return self.error(&format!("expected end; found {}", next));
                    }
                    Some(else_list)
                }
            }
            _ => return self.error(&format!("expected end; found {}", next)),
        };
        self.vars.truncate(vars_len);
        self.depth -= 1;
        Ok((pipe.pos(), pipe, list, else_list))
    }

    fn if_control(&mut self) -> Result<Nodes, ParseError> {
        let (pos, pipe, list, else_list) = self.parse_control(true, "if")?;
        Ok(Nodes::If(IfNode::new_if(pos, pipe, list, else_list)))
    }

    fn range_control(&mut self) -> Result<Nodes, ParseError> {
        let (pos, pipe, list, else_list) = self.parse_control(false, "range")?;
        Ok(Nodes::Range(RangeNode::new_range(
            pos, pipe, list, else_list,
        )))
    }

    fn with_control(&mut self) -> Result<Nodes, ParseError> {
        let (pos, pipe, list, else_list) = self.parse_control(false, "with")?;
        Ok(Nodes::With(WithNode::new_with(pos, pipe, list, else_list)))
    }

    fn end_control(&mut self) -> Result<Nodes, ParseError> {
        Ok(Nodes::End(EndNode::new(
            self.expect(ItemType::RightDelim, "end")?.pos,
        )))
    }

    fn else_control(&mut self) -> Result<Nodes, ParseError> {
        if self.peek_non_space_must("else")?.typ == ItemType::If {
            let peek = self.peek_non_space_must("else")?;
            return Ok(Nodes::Else(ElseNode::new(peek.pos)));
        }
        let token = self.expect(ItemType::RightDelim, "else")?;
        Ok(Nodes::Else(ElseNode::new(token.pos)))
    }

    fn pipeline(&mut self, context: &str) -> Result<PipeNode, ParseError> {
        let mut decl = vec![];
        let mut token = self.next_non_space_must("pipeline")?;
        let pos = token.pos;
        // TODO: test this hard!
        if token.typ == ItemType::Variable {
            while token.typ == ItemType::Variable {
                let token_after_var = self.next_must("variable")?;
                let next = if token_after_var.typ == ItemType::Space {
                    let next = self.next_non_space_must("variable")?;
                    if next.typ != ItemType::ColonEquals
                        && !(next.typ == ItemType::Char && next.val == ",")
                    {
                        self.backup3(token, token_after_var, next);
                        break;
                    }
                    next
                } else {
                    token_after_var
                };
                if next.typ == ItemType::ColonEquals
                    || (next.typ == ItemType::Char && next.val == ",")
                {
                    let variable = VariableNode::new(token.pos, &token.val);
                    self.vars.push(token.val.clone());
                    decl.push(variable);
                    if next.typ == ItemType::Char && next.val == "," {
                        if context == "range" && decl.len() < 2 {
                            token = self.next_non_space_must("variable")?;
                            continue;
                        }
                        return self.error(&format!("to many decalarations in {}", context));
                    }
                } else {
                    self.backup2(token, next);
                }
                break;
            }
        } else {
            self.backup(token);
        }
        let mut pipe = PipeNode::new(pos, decl);
        let mut token = self.next_non_space_must("pipeline")?;
        loop {
            match token.typ {
                ItemType::RightDelim | ItemType::RightParen => {
                    self.check_pipeline(&mut pipe, context)?;
                    if token.typ == ItemType::RightParen {
                        self.backup(token);
                    }
                    return Ok(pipe);
                }
                ItemType::Bool
                | ItemType::CharConstant
                | ItemType::Dot
                | ItemType::Field
                | ItemType::Identifier
                | ItemType::Number
                | ItemType::Nil
                | ItemType::RawString
                | ItemType::String
                | ItemType::Variable
                | ItemType::LeftParen => {
                    self.backup(token);
                    pipe.append(self.command()?);
                }
                _ => return Err(self.unexpected(&token, context)),
            }
            token = self.next_non_space_must("pipeline")?;
        }
    }

    fn check_pipeline(&mut self, pipe: &mut PipeNode, context: &str) -> Result<(), ParseError> {
        if pipe.cmds.is_empty() {
            return self.error(&format!("missing value for {}", context));
        }
        for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
            match c.args.first() {
                Some(n) => match *n.typ() {
                    NodeType::Bool
                    | NodeType::Dot
                    | NodeType::Nil
                    | NodeType::Number
                    | NodeType::String => {
                        return self.error(&format!(
                            "non executable command in pipeline stage {}",
                            i + 2
                        ));
                    }
                    _ => {}
                },
                None => {
                    return self.error(&format!(
                        "non executable command in pipeline stage {}",
                        i + 2
                    ));
                }
            }
        }
        Ok(())
    }

    fn command(&mut self) -> Result<CommandNode, ParseError> {
        let mut cmd = CommandNode::new(self.peek_non_space_must("command")?.pos);
        loop {
            self.peek_non_space_must("operand")?;
            if let Some(operand) = self.operand()? {
                cmd.append(operand);
            }
            let token = self.next_must("command")?;
            match token.typ {
                ItemType::Space => continue,
                ItemType::Error => return self.error(&token.val),
                ItemType::RightDelim | ItemType::RightParen => self.backup(token),
                ItemType::Pipe => {}
                _ => return self.error(&format!("unexpected {} in operand", token)),
            };
            break;
        }
        if cmd.args.is_empty() {
            return self.error("empty command");
        }
        Ok(cmd)
    }

    fn operand(&mut self) -> Result<Option<Nodes>, ParseError> {
        let node = self.term()?;
        match node {
            None => Ok(None),
            Some(n) => {
                let next = self.next_must("operand")?;
                if next.typ == ItemType::Field {
                    let typ = n.typ().clone();
                    match typ {
                        NodeType::Bool
                        | NodeType::String
                        | NodeType::Number
                        | NodeType::Nil
                        | NodeType::Dot => {
                            return self.error(&format!("unexpected . after term {}", n));
                        }
                        _ => {}
                    };
                    let mut chain = ChainNode::new(next.pos, n);
                    chain.add(&next.val);
                    while self
                        .peek()
                        .map(|p| p.typ == ItemType::Field)
                        .unwrap_or(false)
                    {
                        let field = self.next().unwrap();
                        chain.add(&field.val);
                    }
                    let n = match typ {
                        NodeType::Field => {
                            Nodes::Field(FieldNode::new(chain.pos(), &chain.to_string()))
                        }
                        NodeType::Variable => {
                            Nodes::Variable(VariableNode::new(chain.pos(), &chain.to_string()))
                        }
                        _ => Nodes::Chain(chain),
                    };
                    Ok(Some(n))
                } else {
                    self.backup(next);
                    Ok(Some(n))
                }
            }
        }
    }

    fn term(&mut self) -> Result<Option<Nodes>, ParseError> {
        let token = self.next_non_space_must("token")?;
        let node = match token.typ {
            ItemType::Error => return self.error(&token.val),
            ItemType::Identifier => {
                if !self.functions.contains(&token.val) {
                    return self.error(&format!("function {} not defined", token.val));
                }
                let mut node = IdentifierNode::new(token.val);
                node.set_pos(token.pos);
                Nodes::Identifier(node)
            }
            ItemType::Dot => Nodes::Dot(DotNode::new(token.pos)),
            ItemType::Nil => Nodes::Nil(NilNode::new(token.pos)),
            ItemType::Variable => Nodes::Variable(self.use_var(token.pos, &token.val)?),
            ItemType::Field => Nodes::Field(FieldNode::new(token.pos, &token.val)),
            ItemType::Bool => Nodes::Bool(BoolNode::new(token.pos, token.val == "true")),
            ItemType::CharConstant | ItemType::Number => {
                match NumberNode::new(token.pos, token.val, &token.typ) {
                    Ok(n) => Nodes::Number(n),
                    Err(e) => return self.error(&e.to_string()),
                }
            }
            ItemType::LeftParen => {
                let pipe = self.pipeline("parenthesized pipeline")?;
                let next = self.next_must("parenthesized pipeline")?;
                if next.typ != ItemType::RightParen {
                    return self.error(&format!("unclosed right paren: unexpected {}", next));
                }
                Nodes::Pipe(pipe)
            }
            ItemType::RawString => {
                let literal = token.val[1..token.val.len() - 1].replace('\r', "");
                Nodes::String(StringNode::new(token.pos, token.val, literal))
            }
            ItemType::String => {
                if let Some(s) = unquote_str(&token.val) {
                    Nodes::String(StringNode::new(token.pos, token.val, s))
                } else {
                    return self.error(&format!("unable to unqote string: {}", token.val));
                }
            }

            _ => {
                self.backup(token);
                return Ok(None);
            }
        };
        Ok(Some(node))
    }

    fn use_var(&self, pos: Pos, name: &str) -> Result<VariableNode, ParseError> {
        if self.vars.iter().any(|v| v == name) {
            return Ok(VariableNode::new(pos, name));
        }
        self.error(&format!("undefined variable {name}"))
    }
}

impl Iterator for Parser<'_> {
    type Item = Item;
    fn next(&mut self) -> Option<Item> {
        let item = self.token.pop_front().or_else(|| self.lex.next())?;
        self.line = item.line;
        Some(item)
    }
}
