//! Runs a parsed template over a value, as Go's `text/template` executes one, counting
//! steps against the template's budget. Values are borrowed where they are kept (the data,
//! variables, range items) and copied only into results and function arguments, so that
//! `.key` or `index $ $k` costs the item, not the whole map.

use std::borrow::Cow;
use std::cell::Cell;
use std::io::Write;
use std::time::Instant;

use crate::error::{ExecError, kind};
use crate::funcs;
use crate::node::*;
use crate::utils::is_true;
use crate::value::{Func, Value};
use crate::{MissingKey, Template};

struct Variable<'a> {
    name: String,
    /// `$` borrows the data; other variables hold what they were set to.
    value: Cow<'a, Value>,
}

struct State<'a, W: Write> {
    template: &'a Template,
    writer: &'a mut W,
    /// Variables in scope: one frame per range iteration, innermost last.
    vars: Vec<Vec<Variable<'a>>>,
    /// A `Cell`, so that lookups that change nothing else take `&self`.
    steps: Cell<u64>,
    deadline: Instant,
}

/// The value `.` stands for.
struct Context<'v> {
    dot: &'v Value,
}

pub fn execute<W: Write>(
    template: &Template,
    writer: &mut W,
    data: &Value,
) -> Result<(), ExecError> {
    let mut state = State {
        template,
        writer,
        vars: vec![vec![Variable {
            name: "$".to_owned(),
            value: Cow::Borrowed(data),
        }]],
        steps: Cell::new(0),
        deadline: Instant::now() + template.options.limits.deadline,
    };
    state.walk_list(&Context { dot: data }, &template.root)
}

impl<W: Write> State<'_, W> {
    /// Counts one step of work, and stops the template once it has used its budget of
    /// steps or time.
    fn step(&self) -> Result<(), ExecError> {
        self.steps.set(self.steps.get() + 1);
        let limits = &self.template.options.limits;
        if self.steps.get() > limits.max_steps || Instant::now() > self.deadline {
            return Err(ExecError::BudgetExceeded(limits.clone()));
        }
        Ok(())
    }

    fn set_kth_last_var_value(&mut self, k: usize, value: Value) {
        if let Some(frame) = self.vars.last_mut()
            && let Some(i) = frame.len().checked_sub(k)
        {
            frame[i].value = Cow::Owned(value);
        }
    }

    fn var_value(&self, key: &str) -> Result<&Value, ExecError> {
        self.vars
            .iter()
            .rev()
            .flat_map(|frame| frame.iter().rev())
            .find(|var| var.name == key)
            .map(|var| &*var.value)
            .ok_or_else(|| ExecError::VariableNotFound(key.to_string()))
    }

    fn walk_list(&mut self, ctx: &Context, node: &ListNode) -> Result<(), ExecError> {
        for n in &node.nodes {
            self.walk(ctx, n)?;
        }
        Ok(())
    }

    fn walk(&mut self, ctx: &Context, node: &Nodes) -> Result<(), ExecError> {
        self.step()?;
        match node {
            Nodes::Action(n) => {
                let val = self.eval_pipeline(ctx, &n.pipe)?;
                match val {
                    _ if !n.pipe.decl.is_empty() => {}
                    // Go writes a string's bytes as they are, text or not.
                    Value::Bytes(bytes) => self.writer.write_all(&bytes)?,
                    val => write!(self.writer, "{val}")?,
                }
                Ok(())
            }
            Nodes::If(n) | Nodes::With(n) => self.walk_if_or_with(ctx, n),
            Nodes::Range(n) => self.walk_range(ctx, n),
            Nodes::Text(n) => Ok(self.writer.write_all(n.text.as_bytes())?),
            other => Err(ExecError::CannotEvaluateCommand(other.to_string())),
        }
    }

    fn eval_pipeline(&mut self, ctx: &Context, pipe: &PipeNode) -> Result<Value, ExecError> {
        let mut val: Option<Value> = None;
        for cmd in &pipe.cmds {
            val = Some(self.eval_command(ctx, cmd, &val)?);
        }
        // The parser refuses empty pipelines.
        let val = val.unwrap_or(Value::NoValue);
        if let Some(frame) = self.vars.last_mut() {
            for var in &pipe.decl {
                frame.push(Variable {
                    name: var.ident[0].clone(),
                    value: Cow::Owned(val.clone()),
                });
            }
        }
        Ok(val)
    }

    fn eval_command(
        &mut self,
        ctx: &Context,
        cmd: &CommandNode,
        val: &Option<Value>,
    ) -> Result<Value, ExecError> {
        self.step()?;
        let Some(first_word) = cmd.args.first() else {
            return Err(ExecError::CannotEvaluateCommand(cmd.to_string()));
        };
        match first_word {
            Nodes::Field(n) => {
                return Ok(self
                    .eval_field_chain(ctx.dot, &n.ident, &cmd.args, val)?
                    .into_owned());
            }
            Nodes::Variable(n) => {
                return Ok(self.eval_variable_node(n, &cmd.args, val)?.into_owned());
            }
            Nodes::Pipe(n) => return self.eval_pipeline(ctx, n),
            Nodes::Chain(n) => return self.eval_chain_node(ctx, n, &cmd.args, val),
            Nodes::Identifier(n) => return self.eval_function(ctx, n, &cmd.args, val),
            _ => {}
        }
        not_a_function(&cmd.args, val)?;
        match first_word {
            Nodes::Bool(n) => Ok(n.value.clone()),
            Nodes::Dot(_) => Ok(ctx.dot.clone()),
            Nodes::Nil(_) => Ok(Value::Nil),
            Nodes::Number(n) => Ok(n.value.clone()),
            Nodes::String(n) => Ok(n.value.clone()),
            other => Err(ExecError::CannotEvaluateCommand(other.to_string())),
        }
    }

    fn eval_function(
        &mut self,
        ctx: &Context,
        ident: &IdentifierNode,
        args: &[Nodes],
        fin: &Option<Value>,
    ) -> Result<Value, ExecError> {
        let function = self
            .template
            .options
            .functions
            .get(&ident.ident)
            .ok_or_else(|| ExecError::UndefinedFunction(ident.ident.clone()))?;
        self.eval_call(ctx, function, args, fin)
    }

    fn eval_call(
        &mut self,
        ctx: &Context,
        function: Func,
        args: &[Nodes],
        fin: &Option<Value>,
    ) -> Result<Value, ExecError> {
        // Another function of the same address can only be the same code.
        if std::ptr::fn_addr_eq(function, funcs::index as Func)
            && let Some(item) = self.index_in_place(ctx, args, fin)
        {
            return item;
        }
        let mut arg_vals = Vec::with_capacity(args.len());
        for arg in args.iter().skip(1) {
            arg_vals.push(self.eval_arg(ctx, arg)?);
        }
        if let Some(f) = fin {
            arg_vals.push(f.clone());
        }
        self.step()?;
        Ok(function(&arg_vals)?)
    }

    /// `index` of a collection named by a path (`$`, `.`, `$x.a`), looked up where it is
    /// kept rather than copied into an argument, when its keys are paths or literals too;
    /// `None` otherwise: other arguments may declare variables, so they are evaluated in
    /// order by [`State::eval_call`]. Steps and errors are those of the call.
    fn index_in_place(
        &self,
        ctx: &Context,
        args: &[Nodes],
        fin: &Option<Value>,
    ) -> Option<Result<Value, ExecError>> {
        let [_, collection, keys @ ..] = args else {
            return None;
        };
        if !is_path(collection) || !keys.iter().all(|key| is_path(key) || is_literal(key)) {
            return None;
        }
        Some(self.index_path(ctx, collection, keys, fin))
    }

    fn index_path(
        &self,
        ctx: &Context,
        collection: &Nodes,
        keys: &[Nodes],
        fin: &Option<Value>,
    ) -> Result<Value, ExecError> {
        self.step()?;
        let collection = self.eval_pure_arg(ctx.dot, collection)?;
        let mut key_vals = Vec::with_capacity(keys.len() + 1);
        for key in keys {
            self.step()?;
            key_vals.push(self.eval_pure_arg(ctx.dot, key)?.into_owned());
        }
        key_vals.extend(fin.clone());
        self.step()?;
        Ok(funcs::index_of(&collection, &key_vals)?)
    }

    fn eval_chain_node(
        &mut self,
        ctx: &Context,
        chain: &ChainNode,
        args: &[Nodes],
        fin: &Option<Value>,
    ) -> Result<Value, ExecError> {
        if let Nodes::Nil(_) = *chain.node {
            return Err(ExecError::NullInChain(chain.to_string()));
        }
        let pipe = self.eval_arg(ctx, &chain.node)?;
        Ok(self
            .eval_field_chain(&pipe, &chain.field, args, fin)?
            .into_owned())
    }

    fn eval_arg(&mut self, ctx: &Context, node: &Nodes) -> Result<Value, ExecError> {
        self.step()?;
        if is_path(node) || is_literal(node) {
            return Ok(self.eval_pure_arg(ctx.dot, node)?.into_owned());
        }
        match node {
            Nodes::Pipe(n) => self.eval_pipeline(ctx, n),
            Nodes::Identifier(n) => self.eval_function(ctx, n, &[], &None),
            Nodes::Chain(n) => self.eval_chain_node(ctx, n, &[], &None),
            other => Err(ExecError::InvalidArgument(other.to_string())),
        }
    }

    /// A path or a literal, borrowed where it is kept.
    fn eval_pure_arg<'s>(
        &'s self,
        dot: &'s Value,
        node: &'s Nodes,
    ) -> Result<Cow<'s, Value>, ExecError> {
        match node {
            Nodes::Dot(_) => Ok(Cow::Borrowed(dot)),
            Nodes::Field(n) => self.eval_field_chain(dot, &n.ident, &[], &None),
            Nodes::Variable(n) => self.eval_variable_node(n, &[], &None),
            Nodes::Nil(_) => Ok(Cow::Owned(Value::Nil)),
            Nodes::String(n) => Ok(Cow::Borrowed(&n.value)),
            Nodes::Bool(n) => Ok(Cow::Borrowed(&n.value)),
            Nodes::Number(n) => Ok(Cow::Borrowed(&n.value)),
            other => Err(ExecError::InvalidArgument(other.to_string())),
        }
    }

    /// `.a.b.c` on `receiver`; only the last field may take arguments.
    fn eval_field_chain<'r>(
        &self,
        receiver: &'r Value,
        ident: &[String],
        args: &[Nodes],
        fin: &Option<Value>,
    ) -> Result<Cow<'r, Value>, ExecError> {
        let mut current = Cow::Borrowed(receiver);
        for (i, id) in ident.iter().enumerate() {
            let (args, fin) = if i + 1 == ident.len() {
                (args, fin)
            } else {
                (&[][..], &None)
            };
            current = match current {
                Cow::Borrowed(receiver) => self.eval_field(receiver, id, args, fin)?,
                // A function's result, not kept anywhere.
                Cow::Owned(receiver) => {
                    Cow::Owned(self.eval_field(&receiver, id, args, fin)?.into_owned())
                }
            };
        }
        Ok(current)
    }

    fn eval_field<'r>(
        &self,
        receiver: &'r Value,
        field_name: &str,
        args: &[Nodes],
        fin: &Option<Value>,
    ) -> Result<Cow<'r, Value>, ExecError> {
        self.step()?;
        if args.len() > 1 || fin.is_some() {
            return Err(ExecError::NotAFunctionButArguments(field_name.to_string()));
        }
        let missing = || ExecError::NoFieldFor(field_name.to_string(), kind(receiver));
        let value = match receiver {
            Value::Object(o) => o.get(field_name).ok_or_else(missing)?,
            Value::Map(o) => match (o.get(field_name), &self.template.options.missing_key) {
                (Some(value), _) => value,
                (None, MissingKey::Default) => return Ok(Cow::Owned(Value::NoValue)),
                (None, MissingKey::Error) => {
                    return Err(ExecError::MissingKey(field_name.to_string()));
                }
            },
            _ => return Err(missing()),
        };
        if let Value::Function(f) = value {
            return Ok(Cow::Owned((f.f)(std::slice::from_ref(receiver))?));
        }
        Ok(Cow::Borrowed(value))
    }

    fn eval_variable_node(
        &self,
        variable: &VariableNode,
        args: &[Nodes],
        fin: &Option<Value>,
    ) -> Result<Cow<'_, Value>, ExecError> {
        let val = self.var_value(&variable.ident[0])?;
        if variable.ident.len() == 1 {
            not_a_function(args, fin)?;
            return Ok(Cow::Borrowed(val));
        }
        self.eval_field_chain(val, &variable.ident[1..], args, fin)
    }

    /// `if` and `with` behave the same, except that `with` sets dot.
    fn walk_if_or_with(&mut self, ctx: &Context, node: &BranchNode) -> Result<(), ExecError> {
        let val = self.eval_pipeline(ctx, &node.pipe)?;
        if is_true(&val) {
            if *node.typ() == NodeType::With {
                self.walk_list(&Context { dot: &val }, &node.list)
            } else {
                self.walk_list(ctx, &node.list)
            }
        } else if let Some(otherwise) = &node.else_list {
            self.walk_list(ctx, otherwise)
        } else {
            Ok(())
        }
    }

    fn one_iteration(
        &mut self,
        key: Value,
        val: &Value,
        range: &RangeNode,
    ) -> Result<(), ExecError> {
        self.step()?;
        if !range.pipe.decl.is_empty() {
            self.set_kth_last_var_value(1, val.clone());
        }
        if range.pipe.decl.len() > 1 {
            self.set_kth_last_var_value(2, key);
        }
        self.vars.push(Vec::new());
        let walked = self.walk_list(&Context { dot: val }, &range.list);
        self.vars.pop();
        walked
    }

    /// Maps are visited in the order of their keys, as in Go.
    fn walk_range(&mut self, ctx: &Context, range: &RangeNode) -> Result<(), ExecError> {
        let val = self.eval_pipeline(ctx, &range.pipe)?;
        let empty = match &val {
            Value::Object(map) | Value::Map(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_unstable_by_key(|(k, _)| *k);
                for (k, v) in entries {
                    self.one_iteration(Value::from(k), v, range)?;
                }
                map.is_empty()
            }
            Value::Array(vec) => {
                for (k, v) in vec.iter().enumerate() {
                    self.one_iteration(Value::from(k), v, range)?;
                }
                vec.is_empty()
            }
            Value::NoValue | Value::Nil => true,
            other => return Err(ExecError::InvalidRange(kind(other))),
        };
        match &range.else_list {
            Some(else_list) if empty => self.walk_list(ctx, else_list),
            _ => Ok(()),
        }
    }
}

fn not_a_function(args: &[Nodes], val: &Option<Value>) -> Result<(), ExecError> {
    if args.len() > 1 || val.is_some() {
        return Err(ExecError::ArgumentForNonFunction(args[0].to_string()));
    }
    Ok(())
}

/// `.`, `.a.b`, `$x` or `$x.a`: evaluated without side effects.
fn is_path(node: &Nodes) -> bool {
    matches!(node, Nodes::Dot(_) | Nodes::Field(_) | Nodes::Variable(_))
}

fn is_literal(node: &Nodes) -> bool {
    matches!(
        node,
        Nodes::Nil(_) | Nodes::String(_) | Nodes::Bool(_) | Nodes::Number(_)
    )
}
