//! Runs a parsed template over a value, as Go's `text/template` executes one, counting
//! steps against the template's budget.

use std::io::Write;
use std::time::Instant;

use gtmpl_value::{Func, Value};

use crate::error::{ExecError, kind};
use crate::node::*;
use crate::utils::is_true;
use crate::{MissingKey, Template};

struct Variable {
    name: String,
    value: Value,
}

struct State<'a, W: Write> {
    template: &'a Template,
    writer: &'a mut W,
    /// Variables in scope: one frame per range iteration, innermost last.
    vars: Vec<Vec<Variable>>,
    steps: u64,
    deadline: Instant,
}

/// The value `.` stands for.
struct Context {
    dot: Value,
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
            value: data.clone(),
        }]],
        steps: 0,
        deadline: Instant::now() + template.options.limits.deadline,
    };
    let ctx = Context { dot: data.clone() };
    state.walk_list(&ctx, &template.root)
}

impl<W: Write> State<'_, W> {
    /// Counts one step of work, and stops the template once it has used its budget of
    /// steps or time.
    fn step(&mut self) -> Result<(), ExecError> {
        self.steps += 1;
        let limits = &self.template.options.limits;
        if self.steps > limits.max_steps || Instant::now() > self.deadline {
            return Err(ExecError::BudgetExceeded(limits.clone()));
        }
        Ok(())
    }

    fn set_kth_last_var_value(&mut self, k: usize, value: Value) {
        if let Some(frame) = self.vars.last_mut()
            && let Some(i) = frame.len().checked_sub(k)
        {
            frame[i].value = value;
        }
    }

    fn var_value(&self, key: &str) -> Result<Value, ExecError> {
        self.vars
            .iter()
            .rev()
            .flat_map(|frame| frame.iter().rev())
            .find(|var| var.name == key)
            .map(|var| var.value.clone())
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
                if n.pipe.decl.is_empty() {
                    write!(self.writer, "{val}")?;
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
                    value: val.clone(),
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
            Nodes::Field(n) => return self.eval_field_chain(&ctx.dot, &n.ident, &cmd.args, val),
            Nodes::Variable(n) => return self.eval_variable_node(n, &cmd.args, val),
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
        self.eval_field_chain(&pipe, &chain.field, args, fin)
    }

    fn eval_arg(&mut self, ctx: &Context, node: &Nodes) -> Result<Value, ExecError> {
        self.step()?;
        match node {
            Nodes::Dot(_) => Ok(ctx.dot.clone()),
            Nodes::Nil(_) => Ok(Value::Nil),
            Nodes::Field(n) => self.eval_field_chain(&ctx.dot, &n.ident, &[], &None),
            Nodes::Variable(n) => self.eval_variable_node(n, &[], &None),
            Nodes::Pipe(n) => self.eval_pipeline(ctx, n),
            Nodes::Identifier(n) => self.eval_function(ctx, n, &[], &None),
            Nodes::Chain(n) => self.eval_chain_node(ctx, n, &[], &None),
            Nodes::String(n) => Ok(n.value.clone()),
            Nodes::Bool(n) => Ok(n.value.clone()),
            Nodes::Number(n) => Ok(n.value.clone()),
            other => Err(ExecError::InvalidArgument(other.to_string())),
        }
    }

    /// `.a.b.c` on `receiver`; only the last field may take arguments.
    fn eval_field_chain(
        &mut self,
        receiver: &Value,
        ident: &[String],
        args: &[Nodes],
        fin: &Option<Value>,
    ) -> Result<Value, ExecError> {
        let Some((last, path)) = ident.split_last() else {
            return Ok(receiver.clone());
        };
        let mut current = receiver.clone();
        for id in path {
            current = self.eval_field(&current, id, &[], &None)?;
        }
        self.eval_field(&current, last, args, fin)
    }

    fn eval_field(
        &mut self,
        receiver: &Value,
        field_name: &str,
        args: &[Nodes],
        fin: &Option<Value>,
    ) -> Result<Value, ExecError> {
        self.step()?;
        if args.len() > 1 || fin.is_some() {
            return Err(ExecError::NotAFunctionButArguments(field_name.to_string()));
        }
        let missing = || ExecError::NoFieldFor(field_name.to_string(), kind(receiver));
        let value = match receiver {
            Value::Object(o) => o.get(field_name).cloned().ok_or_else(missing)?,
            Value::Map(o) => match (o.get(field_name), &self.template.options.missing_key) {
                (Some(value), _) => value.clone(),
                (None, MissingKey::Default) => Value::NoValue,
                (None, MissingKey::Error) => {
                    return Err(ExecError::MissingKey(field_name.to_string()));
                }
            },
            _ => return Err(missing()),
        };
        if let Value::Function(f) = &value {
            return Ok((f.f)(std::slice::from_ref(receiver))?);
        }
        Ok(value)
    }

    fn eval_variable_node(
        &mut self,
        variable: &VariableNode,
        args: &[Nodes],
        fin: &Option<Value>,
    ) -> Result<Value, ExecError> {
        let val = self.var_value(&variable.ident[0])?;
        if variable.ident.len() == 1 {
            not_a_function(args, fin)?;
            return Ok(val);
        }
        self.eval_field_chain(&val, &variable.ident[1..], args, fin)
    }

    /// `if` and `with` behave the same, except that `with` sets dot.
    fn walk_if_or_with(&mut self, ctx: &Context, node: &BranchNode) -> Result<(), ExecError> {
        let val = self.eval_pipeline(ctx, &node.pipe)?;
        if is_true(&val) {
            if *node.typ() == NodeType::With {
                self.walk_list(&Context { dot: val }, &node.list)
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
        val: Value,
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
                    self.one_iteration(Value::from(k), v.clone(), range)?;
                }
                map.is_empty()
            }
            Value::Array(vec) => {
                for (k, v) in vec.iter().enumerate() {
                    self.one_iteration(Value::from(k), v.clone(), range)?;
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
