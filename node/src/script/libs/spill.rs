//! Lua values kept in a Lua table rather than in Rust.
//!
//! mlua gives every Lua value held in Rust (a string, a table) a slot on a helper thread's stack,
//! which holds about 8000 (`LUAI_MAXCSTACK`) and panics when full. So anything that grows with
//! the input (a function's results, the open tables of a deep nesting) lives in a Lua table, and
//! Rust holds a bounded number of values at a time.

use mlua::{Lua, MultiValue, Table, Value};

/// A stack of Lua values in a Lua table (index 1 at the bottom); nils included.
pub(crate) struct Spill {
    table: Table,
    len: usize,
}

impl Spill {
    pub(crate) fn new(lua: &Lua) -> mlua::Result<Self> {
        Ok(Spill {
            table: lua.create_table()?,
            len: 0,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn push(&mut self, v: Value) -> mlua::Result<()> {
        self.table.raw_set(self.len + 1, v)?;
        self.len += 1;
        Ok(())
    }

    /// The top value, removed (nil when empty).
    pub(crate) fn pop(&mut self) -> mlua::Result<Value> {
        if self.len == 0 {
            return Ok(Value::Nil);
        }
        let v = self.table.raw_get(self.len)?;
        self.table.raw_set(self.len, Value::Nil)?;
        self.len -= 1;
        Ok(v)
    }

    /// The top value (nil when empty).
    pub(crate) fn last(&self) -> mlua::Result<Value> {
        if self.len == 0 {
            return Ok(Value::Nil);
        }
        self.table.raw_get(self.len)
    }
}

/// Values up to this many stay in Rust.
const IN_RUST: usize = 64;

/// What a library function returns: its values, or a Lua table holding the first `n` of them
/// (see `call::Binder`).
pub(crate) enum Out {
    Values(MultiValue),
    List(Table, usize),
}

/// A function's results as they are produced: a few in Rust, all in a [`Spill`] past that.
pub(crate) struct Results {
    values: Vec<Value>,
    spill: Option<Spill>,
}

impl Results {
    pub(crate) fn new() -> Self {
        Results {
            values: Vec::new(),
            spill: None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        match &self.spill {
            Some(s) => s.len(),
            None => self.values.len(),
        }
    }

    pub(crate) fn push(&mut self, lua: &Lua, v: Value) -> mlua::Result<()> {
        if let Some(s) = &mut self.spill {
            return s.push(v);
        }
        if self.values.len() < IN_RUST {
            self.values.push(v);
            return Ok(());
        }
        let mut s = Spill::new(lua)?;
        for v in self.values.drain(..) {
            s.push(v)?;
        }
        s.push(v)?;
        self.spill = Some(s);
        Ok(())
    }

    /// The last value, removed (`None` when there is none).
    pub(crate) fn pop(&mut self) -> mlua::Result<Option<Value>> {
        match &mut self.spill {
            Some(s) if s.len() > 0 => s.pop().map(Some),
            Some(_) => Ok(None),
            None => Ok(self.values.pop()),
        }
    }

    /// The last value (`None` when there is none).
    pub(crate) fn last(&self) -> mlua::Result<Option<Value>> {
        match &self.spill {
            Some(s) if s.len() > 0 => s.last().map(Some),
            Some(_) => Ok(None),
            None => Ok(self.values.last().cloned()),
        }
    }

    /// Puts `v` first.
    pub(crate) fn push_front(&mut self, lua: &Lua, v: Value) -> mlua::Result<()> {
        match &mut self.spill {
            None if self.values.len() < IN_RUST => {
                self.values.insert(0, v);
                Ok(())
            }
            _ => {
                // Rare (a long list gaining its first value): rebuild it.
                let mut all = Spill::new(lua)?;
                all.push(v)?;
                let n = self.len();
                let old = std::mem::replace(self, Results::new());
                match old.spill {
                    Some(s) => {
                        for i in 1..=n {
                            all.push(s.table.raw_get(i)?)?;
                        }
                    }
                    None => {
                        for v in old.values {
                            all.push(v)?;
                        }
                    }
                }
                self.spill = Some(all);
                Ok(())
            }
        }
    }

    pub(crate) fn into_out(self) -> Out {
        match self.spill {
            Some(s) => Out::List(s.table, s.len),
            None => Out::Values(MultiValue::from_vec(self.values)),
        }
    }
}

/// How many open tables a walker keeps in Rust before [`Deep`] spills the older ones.
const DEPTH_IN_RUST: usize = 32;

/// An open table as a walker holds it, which can wait in Lua as two values.
pub(crate) trait Spillable: Sized {
    fn spill(self, lua: &Lua) -> mlua::Result<(Value, Value)>;
    fn unspill(a: Value, b: Value) -> Option<Self>;
}

/// The open tables of a nesting: the innermost [`DEPTH_IN_RUST`] in Rust, the others in a
/// [`Spill`], so that nesting depth costs no mlua references.
pub(crate) struct Deep<T> {
    top: Vec<T>,
    spill: Option<Spill>,
    spilled: usize,
}

impl<T: Spillable> Deep<T> {
    pub(crate) fn new() -> Self {
        Deep {
            top: Vec::new(),
            spill: None,
            spilled: 0,
        }
    }

    pub(crate) fn push(&mut self, lua: &Lua, v: T) -> mlua::Result<()> {
        if self.top.len() == DEPTH_IN_RUST {
            let (a, b) = self.top.remove(0).spill(lua)?;
            let s = match &mut self.spill {
                Some(s) => s,
                None => self.spill.insert(Spill::new(lua)?),
            };
            s.push(a)?;
            s.push(b)?;
            self.spilled += 1;
        }
        self.top.push(v);
        Ok(())
    }

    pub(crate) fn last_mut(&mut self) -> Option<&mut T> {
        self.top.last_mut()
    }

    /// The innermost, removed; its parent (if spilled) comes back to Rust.
    pub(crate) fn pop(&mut self) -> mlua::Result<Option<T>> {
        let v = self.top.pop();
        if let (true, Some(s)) = (self.top.is_empty() && self.spilled > 0, &mut self.spill) {
            let b = s.pop()?;
            let a = s.pop()?;
            self.spilled -= 1;
            if let Some(t) = T::unspill(a, b) {
                self.top.push(t);
            }
        }
        Ok(v)
    }
}
