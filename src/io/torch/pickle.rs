//! A restricted unpickler: enough of Python's pickle protocol (0 to 5) to read what
//! `torch.save` writes — dicts, lists, tuples, strings, numbers and tensors — without
//! Python and without running anything.
//!
//! A real unpickler imports the classes a pickle names and calls them. This one never
//! does: `GLOBAL` only records the name, and `REDUCE`/`NEWOBJ` only build a tensor, an
//! `OrderedDict` or an opaque [`Value::Object`] that remembers its class. So a hostile
//! pickle cannot run code, and every length it declares is checked against the bytes
//! that are really there before anything is allocated.
//!
//! Lists and dicts are shared (`Rc<RefCell<..>>`) because pickle mutates objects after
//! memoising them (`EMPTY_DICT`, `BINPUT`, ..., `SETITEMS`): a later `BINGET` must see
//! the filled dict, and a memo reused a million times must not copy it a million times.
//!
//! Nothing here recurses over the value tree: a 2 MB pickle nests lists a million deep,
//! which a recursive walk (or the compiler's recursive drop) would overflow the stack
//! on. [`Value`]'s `Drop` and `Debug` are written out for that reason, and dict keys are
//! indexed so that a state_dict of 200k keys is built in linear time.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

/// The opcodes, under the names CPython's `pickle.py` and `pickletools` give them: the
/// reader's and the writer's (`torch_writer.rs`) one table.
pub(crate) mod op {
    // Protocol 0 and 1.
    pub const MARK: u8 = b'(';
    pub const STOP: u8 = b'.';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const FLOAT: u8 = b'F';
    pub const INT: u8 = b'I';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const LONG: u8 = b'L';
    pub const BININT2: u8 = b'M';
    pub const NONE: u8 = b'N';
    pub const BINPERSID: u8 = b'Q';
    pub const REDUCE: u8 = b'R';
    pub const BINUNICODE: u8 = b'X';
    pub const APPEND: u8 = b'a';
    pub const BUILD: u8 = b'b';
    pub const GLOBAL: u8 = b'c';
    pub const DICT: u8 = b'd';
    pub const EMPTY_DICT: u8 = b'}';
    pub const APPENDS: u8 = b'e';
    pub const GET: u8 = b'g';
    pub const BINGET: u8 = b'h';
    pub const LONG_BINGET: u8 = b'j';
    pub const LIST: u8 = b'l';
    pub const EMPTY_LIST: u8 = b']';
    pub const PUT: u8 = b'p';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const SETITEM: u8 = b's';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const SETITEMS: u8 = b'u';
    pub const BINFLOAT: u8 = b'G';
    // Protocol 2.
    pub const PROTO: u8 = 0x80;
    pub const NEWOBJ: u8 = 0x81;
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    // Protocol 3.
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
    // Protocol 4.
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BINBYTES8: u8 = 0x8e;
    pub const EMPTY_SET: u8 = 0x8f;
    pub const ADDITEMS: u8 = 0x90;
    pub const FROZENSET: u8 = 0x91;
    pub const NEWOBJ_EX: u8 = 0x92;
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const MEMOIZE: u8 = 0x94;
    pub const FRAME: u8 = 0x95;
    // Protocol 5.
    pub const BYTEARRAY8: u8 = 0x96;
    pub const READONLY_BUFFER: u8 = 0x98;
}

/// A persistent id resolved by the caller: for `torch.save`, a storage in the archive.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// The storage class, e.g. `torch.FloatStorage` (this is how the dtype is written).
    pub class: String,
    /// The record name under `data/` in the archive.
    pub key: String,
    /// Elements in the storage.
    pub numel: u64,
}

/// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`: a view of a
/// storage, not yet read.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// The storage the view reads.
    pub storage: StorageRef,
    /// The view's first element, in elements from the storage's start.
    pub offset: i64,
    /// The view's size.
    pub size: Vec<i64>,
    /// The view's stride, in elements.
    pub stride: Vec<i64>,
}

/// A value pickle may mutate after memoising it.
pub type Shared<T> = Rc<RefCell<T>>;

/// A Python value, as far as a state_dict needs it.
///
/// `Clone` is shallow (lists, dicts and tuples are shared); `Drop` and `Debug` never
/// recurse, however deep the nesting.
#[derive(Clone)]
pub enum Value {
    /// `None`.
    None,
    /// `True` or `False`.
    Bool(bool),
    /// An integer that fits in i64.
    Int(i64),
    /// An integer too large for i64 (`LONG1`/`LONG4`); only its size is kept.
    BigInt,
    /// A float.
    Float(f64),
    /// A `str`.
    Str(String),
    /// `bytes` or `bytearray`; only that it was there is kept.
    Bytes,
    /// A tuple.
    Tuple(Rc<Vec<Value>>),
    /// A list (sets become lists too).
    List(Shared<Vec<Value>>),
    /// A dict, `OrderedDict` included.
    Dict(Shared<Dict>),
    /// A class or function named by `GLOBAL`/`STACK_GLOBAL`: `module.name`.
    Global(Rc<str>),
    /// A storage, as the persistent-id callback resolved it.
    Storage(StorageRef),
    /// A tensor: a view of a storage.
    Tensor(Rc<TensorRef>),
    /// Anything else a callable would have built; only its class is known.
    Object(Rc<str>),
    /// A `MARK` on the stack.
    Mark,
}

impl Value {
    /// A short description for error messages (never the contents: they may be huge or
    /// cyclic).
    pub fn describe(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "a bool".into(),
            Value::Int(_) | Value::BigInt => "an int".into(),
            Value::Float(_) => "a float".into(),
            Value::Str(_) => "a str".into(),
            Value::Bytes => "bytes".into(),
            Value::Tuple(_) => "a tuple".into(),
            Value::List(_) => "a list".into(),
            Value::Dict(_) => "a dict".into(),
            Value::Global(name) => format!("the class {name}"),
            Value::Storage(_) => "a storage".into(),
            Value::Tensor(_) => "a tensor".into(),
            Value::Object(class) => format!("a {class} object"),
            Value::Mark => "a mark".into(),
        }
    }

    /// The string, if this is a `str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an `int` that fits in i64 or a `bool`.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// The items of a tuple or list.
    pub fn items(&self) -> Option<Vec<Value>> {
        match self {
            Value::Tuple(t) => Some(t.as_ref().clone()),
            Value::List(l) => Some(l.borrow().clone()),
            _ => None,
        }
    }

    /// Moves the children this value alone owns into `out`, leaving it without any:
    /// the one step of the iterative drop.
    fn take_children(&mut self, out: &mut Vec<Value>) {
        match self {
            Value::Tuple(t) => {
                if let Some(items) = Rc::get_mut(t) {
                    out.append(items);
                }
            }
            Value::List(l) => {
                if let Some(items) = Rc::get_mut(l) {
                    out.append(items.get_mut());
                }
            }
            Value::Dict(d) => {
                if let Some(dict) = Rc::get_mut(d) {
                    let dict = dict.get_mut();
                    dict.index.clear();
                    for (k, v) in dict.items.drain(..) {
                        out.push(k);
                        out.push(v);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Drops the tree with a work list instead of the call stack: the derived drop
/// recurses once per level and overflows on a pickle of lists nested a million deep.
impl Drop for Value {
    fn drop(&mut self) {
        let mut work = Vec::new();
        self.take_children(&mut work);
        while let Some(mut v) = work.pop() {
            v.take_children(&mut work);
            // `v` is dropped here with no children left, so this does not recurse.
        }
    }
}

/// One level only (containers show their length), so that a deep or cyclic value
/// prints in bounded time and stack.
impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "Int({i})"),
            Value::Bool(b) => write!(f, "Bool({b})"),
            Value::Str(s) => write!(f, "Str({s:?})"),
            Value::Tuple(t) => write!(f, "Tuple(len {})", t.len()),
            Value::List(l) => write!(f, "List(len {})", l.borrow().len()),
            Value::Dict(d) => write!(f, "Dict(len {})", d.borrow().len()),
            Value::Storage(s) => write!(f, "{s:?}"),
            Value::Tensor(t) => write!(f, "{t:?}"),
            other => f.write_str(&other.describe()),
        }
    }
}

/// A key pickle's dicts are looked up by: `str` and `int` (the keys a state_dict has).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Str(String),
    Int(i64),
}

impl Key {
    fn of(v: &Value) -> Option<Key> {
        match v {
            Value::Str(s) => Some(Key::Str(s.clone())),
            Value::Int(i) => Some(Key::Int(*i)),
            _ => None,
        }
    }
}

/// A dict's items in insertion order (Python's), indexed by key so that setting an item
/// is O(1): a linear search made a 200k-key state_dict take minutes.
#[derive(Default)]
pub struct Dict {
    items: Vec<(Value, Value)>,
    index: HashMap<Key, usize>,
}

impl Dict {
    /// Sets `key` to `value`: a later value for a key replaces the earlier one in place,
    /// as in Python. Keys other than `str` and `int` are never equal to another.
    pub fn insert(&mut self, key: Value, value: Value) {
        match Key::of(&key) {
            Some(k) => match self.index.get(&k) {
                Some(&at) => self.items[at].1 = value,
                None => {
                    self.index.insert(k, self.items.len());
                    self.items.push((key, value));
                }
            },
            None => self.items.push((key, value)),
        }
    }

    /// The value under the string key `key`.
    pub fn get_str(&self, key: &str) -> Option<&Value> {
        let at = *self.index.get(&Key::Str(key.to_string()))?;
        Some(&self.items[at].1)
    }

    /// The items, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = &(Value, Value)> {
        self.items.iter()
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }
}

/// Resolves `BINPERSID`: given the persistent id tuple, what it stands for.
pub type PersistentLoad<'a> = dyn FnMut(&Value) -> Result<Value, String> + 'a;

/// Unpickles `data`. Errors are plain strings; the caller adds the file's name.
pub fn unpickle(data: &[u8], persistent_load: &mut PersistentLoad) -> Result<Value, String> {
    Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
    }
    .run(persistent_load)
}

struct Machine<'d> {
    data: &'d [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

/// Whether a group of opcodes knew the opcode it was given.
type Handled = Result<bool, String>;

impl<'d> Machine<'d> {
    fn take(&mut self, n: usize) -> Result<&'d [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                format!(
                    "pickle truncated: {n} bytes needed at offset {}, {} left",
                    self.pos,
                    self.data.len() - self.pos
                )
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A length prefix, checked against the bytes left before it is used.
    fn len(&mut self, n: u64) -> Result<usize, String> {
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.data.len() - self.pos)
            .ok_or_else(|| {
                format!(
                    "pickle declares {n} bytes at offset {}, only {} left",
                    self.pos,
                    self.data.len() - self.pos
                )
            })
    }

    fn line(&mut self) -> Result<&'d str, String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("pickle truncated: unterminated text line")?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| "pickle: text line is not UTF-8")?;
        self.pos += n + 1;
        Ok(s)
    }

    fn utf8(&mut self, n: u64) -> Result<Value, String> {
        let n = self.len(n)?;
        let bytes = self.take(n)?;
        let s = std::str::from_utf8(bytes).map_err(|_| "pickle: a string is not UTF-8")?;
        Ok(Value::Str(s.to_string()))
    }

    fn push(&mut self, v: Value) -> Handled {
        self.stack.push(v);
        Ok(true)
    }

    fn pop(&mut self) -> Result<Value, String> {
        match self.stack.pop() {
            Some(Value::Mark) | None => Err("pickle: stack underflow".into()),
            Some(v) => Ok(v),
        }
    }

    fn top(&mut self) -> Result<&mut Value, String> {
        match self.stack.last_mut() {
            Some(Value::Mark) | None => Err("pickle: stack underflow".into()),
            Some(v) => Ok(v),
        }
    }

    /// Pops everything down to the last MARK (and the mark).
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or("pickle: no MARK on the stack")?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    fn run(mut self, persistent_load: &mut PersistentLoad) -> Result<Value, String> {
        loop {
            let op = self.u8()?;
            if op == op::STOP {
                return self.pop();
            }
            let known = self.control(op)?
                || self.number(op)?
                || self.string(op)?
                || self.container(op)?
                || self.fill(op)?
                || self.memo(op)?
                || self.call(op, persistent_load)?;
            if !known {
                return Err(format!(
                    "pickle opcode 0x{op:02x} at offset {} is not supported",
                    self.pos - 1
                ));
            }
        }
    }

    /// The protocol header, framing and plain stack manipulation.
    fn control(&mut self, op: u8) -> Handled {
        match op {
            op::PROTO => {
                let proto = self.u8()?;
                if proto > 5 {
                    return Err(format!("pickle protocol {proto} is not supported"));
                }
            }
            op::FRAME => {
                self.u64()?; // a size hint only
            }
            op::MARK => self.stack.push(Value::Mark),
            op::POP => {
                self.pop()?;
            }
            op::DUP => {
                let v = self.top()?.clone();
                self.stack.push(v)
            }
            op::POP_MARK => {
                self.pop_mark()?;
            }
            // Marks the bytearray below as read-only: nothing to do with bytes not kept.
            op::READONLY_BUFFER => {
                self.top()?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn number(&mut self, op: u8) -> Handled {
        let v = match op {
            op::NONE => Value::None,
            op::NEWTRUE => Value::Bool(true),
            op::NEWFALSE => Value::Bool(false),
            op::BININT => Value::Int(i32::from_le_bytes(self.array()?).into()),
            op::BININT1 => Value::Int(self.u8()?.into()),
            op::BININT2 => Value::Int(self.u16()?.into()),
            op::LONG1 | op::LONG4 => {
                // little-endian two's complement of n bytes
                let n = if op == op::LONG1 {
                    u64::from(self.u8()?)
                } else {
                    u64::from(self.u32()?)
                };
                let n = self.len(n)?;
                long(self.take(n)?)
            }
            op::INT | op::LONG => {
                // protocol 0: decimal text; "01"/"00" are True/False.
                let line = self.line()?.trim_end_matches('L');
                match line {
                    "01" => Value::Bool(true),
                    "00" => Value::Bool(false),
                    _ => line.parse().map(Value::Int).unwrap_or(Value::BigInt),
                }
            }
            op::BINFLOAT => Value::Float(f64::from_be_bytes(self.array()?)),
            op::FLOAT => Value::Float(
                self.line()?
                    .parse::<f64>()
                    .map_err(|_| "pickle: bad FLOAT")?,
            ),
            _ => return Ok(false),
        };
        self.push(v)
    }

    fn string(&mut self, op: u8) -> Handled {
        let v = match op {
            op::BINUNICODE => {
                let n = self.u32()?;
                self.utf8(n.into())?
            }
            op::SHORT_BINUNICODE => {
                let n = self.u8()?;
                self.utf8(n.into())?
            }
            op::BINUNICODE8 => {
                let n = self.u64()?;
                self.utf8(n)?
            }
            op::SHORT_BINBYTES | op::BINBYTES | op::BINBYTES8 | op::BYTEARRAY8 => {
                // skipped, after checking the length
                let n = match op {
                    op::SHORT_BINBYTES => u64::from(self.u8()?),
                    op::BINBYTES => u64::from(self.u32()?),
                    _ => self.u64()?,
                };
                let n = self.len(n)?;
                self.take(n)?;
                Value::Bytes
            }
            _ => return Ok(false),
        };
        self.push(v)
    }

    /// The opcodes that build a tuple, list, set or dict.
    fn container(&mut self, op: u8) -> Handled {
        let v = match op {
            op::EMPTY_TUPLE => Value::Tuple(Rc::new(Vec::new())),
            op::TUPLE => Value::Tuple(Rc::new(self.pop_mark()?)),
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = usize::from(op - op::TUPLE1 + 1);
                if self.stack.len() < n {
                    return Err("pickle: stack underflow".into());
                }
                let items = self.stack.split_off(self.stack.len() - n);
                if items.iter().any(|v| matches!(v, Value::Mark)) {
                    return Err("pickle: a MARK inside a tuple".into());
                }
                Value::Tuple(Rc::new(items))
            }
            // Sets become lists.
            op::EMPTY_LIST | op::EMPTY_SET => Value::List(Rc::default()),
            op::LIST | op::FROZENSET => Value::List(Rc::new(RefCell::new(self.pop_mark()?))),
            op::EMPTY_DICT => Value::Dict(Rc::default()),
            op::DICT => {
                let items = self.pop_mark()?;
                let dict = Value::Dict(Rc::default());
                set_items(&dict, items)?;
                dict
            }
            _ => return Ok(false),
        };
        self.push(v)
    }

    /// The opcodes that add to the list, set or dict on the stack.
    fn fill(&mut self, op: u8) -> Handled {
        match op {
            op::APPEND => {
                let v = self.pop()?;
                match self.top()? {
                    Value::List(l) => l.borrow_mut().push(v),
                    other => return Err(format!("pickle: APPEND to {}", other.describe())),
                }
            }
            op::APPENDS | op::ADDITEMS => {
                let items = self.pop_mark()?;
                match self.top()? {
                    Value::List(l) => l.borrow_mut().extend(items),
                    // list subclasses and other objects: the items are not needed
                    Value::Object(_) => {}
                    other => return Err(format!("pickle: APPENDS to {}", other.describe())),
                }
            }
            op::SETITEM => {
                let v = self.pop()?;
                let k = self.pop()?;
                set_items(self.top()?, vec![k, v])?
            }
            op::SETITEMS => {
                let items = self.pop_mark()?;
                set_items(self.top()?, items)?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn memo(&mut self, op: u8) -> Handled {
        let index = |line: &str| line.parse::<u32>().map_err(|_| "pickle: bad memo index");
        match op {
            op::PUT => {
                let i = index(self.line()?)?;
                self.memo_put(i)?
            }
            op::BINPUT => {
                let i = self.u8()?.into();
                self.memo_put(i)?
            }
            op::LONG_BINPUT => {
                let i = self.u32()?;
                self.memo_put(i)?
            }
            op::MEMOIZE => {
                let i = u32::try_from(self.memo.len()).map_err(|_| "pickle: memo full")?;
                self.memo_put(i)?
            }
            op::GET => {
                let i = index(self.line()?)?;
                self.memo_get(i)?
            }
            op::BINGET => {
                let i = self.u8()?.into();
                self.memo_get(i)?
            }
            op::LONG_BINGET => {
                let i = self.u32()?;
                self.memo_get(i)?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn memo_get(&mut self, i: u32) -> Result<(), String> {
        let v = self
            .memo
            .get(&i)
            .cloned()
            .ok_or_else(|| format!("pickle: memo {i} read before it was written"))?;
        self.stack.push(v);
        Ok(())
    }

    fn memo_put(&mut self, i: u32) -> Result<(), String> {
        let v = self.top()?.clone();
        self.memo.insert(i, v);
        Ok(())
    }

    /// Names of classes and the opcodes that would call them: nothing is ever called.
    fn call(&mut self, op: u8, persistent_load: &mut PersistentLoad) -> Handled {
        let v = match op {
            op::GLOBAL => {
                let module = self.line()?;
                let name = self.line()?;
                Value::Global(format!("{module}.{name}").into())
            }
            op::STACK_GLOBAL => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (module.as_str(), name.as_str()) {
                    (Some(m), Some(n)) => Value::Global(format!("{m}.{n}").into()),
                    _ => return Err("pickle: STACK_GLOBAL needs two strings".into()),
                }
            }
            op::REDUCE => {
                let args = self.pop()?;
                let callable = self.pop()?;
                reduce(&callable, &args)?
            }
            op::NEWOBJ | op::NEWOBJ_EX => {
                // cls.__new__(cls, *args[, **kwargs])
                if op == op::NEWOBJ_EX {
                    self.pop()?;
                }
                self.pop()?;
                object_of(&self.pop()?)
            }
            op::BUILD => {
                // sets an object's state: nothing a state_dict needs
                self.pop()?;
                self.top()?;
                return Ok(true);
            }
            op::BINPERSID => {
                let pid = self.pop()?;
                persistent_load(&pid)?
            }
            _ => return Ok(false),
        };
        self.push(v)
    }
}

fn long(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    if bytes.len() > 8 {
        return Value::BigInt;
    }
    let negative = bytes[bytes.len() - 1] & 0x80 != 0;
    let mut buf = if negative { [0xff; 8] } else { [0; 8] };
    buf[..bytes.len()].copy_from_slice(bytes);
    Value::Int(i64::from_le_bytes(buf))
}

fn set_items(target: &Value, items: Vec<Value>) -> Result<(), String> {
    if !items.len().is_multiple_of(2) {
        return Err("pickle: SETITEMS with an odd number of items".into());
    }
    match target {
        Value::Dict(d) => {
            let mut d = d.borrow_mut();
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                d.insert(k, v);
            }
            Ok(())
        }
        // dict subclasses pickled as objects: their items are not needed.
        Value::Object(_) => Ok(()),
        other => Err(format!("pickle: SETITEMS on {}", other.describe())),
    }
}

fn object_of(cls: &Value) -> Value {
    match cls {
        Value::Global(name) if is_dict_class(name) => Value::Dict(Rc::default()),
        Value::Global(name) => Value::Object(name.clone()),
        other => Value::Object(other.describe().into()),
    }
}

fn is_dict_class(name: &str) -> bool {
    matches!(name, "collections.OrderedDict" | "builtins.dict")
}

/// `callable(*args)` for the few callables torch.save uses; anything else becomes an
/// opaque object (never called).
fn reduce(callable: &Value, args: &Value) -> Result<Value, String> {
    let Value::Global(name) = callable else {
        return Ok(Value::Object("an unknown callable's result".into()));
    };
    let args = match args {
        Value::Tuple(t) => t.clone(),
        _ => return Err(format!("pickle: REDUCE {name} with {}", args.describe())),
    };
    match name.as_ref() {
        "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
            rebuild_tensor(&args).map_err(|e| format!("{name}: {e}"))
        }
        // Parameters pickle as their data.
        "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => args
            .first()
            .cloned()
            .ok_or_else(|| format!("{name}: no arguments")),
        n if is_dict_class(n) => {
            let dict = Value::Dict(Rc::default());
            if let Some(items) = args.first().and_then(Value::items) {
                for pair in items {
                    match pair.items().as_deref() {
                        Some([k, v]) => set_items(&dict, vec![k.clone(), v.clone()])?,
                        _ => return Err(format!("{name}: items must be pairs")),
                    }
                }
            }
            Ok(dict)
        }
        _ => Ok(Value::Object(name.clone())),
    }
}

fn ints(v: &Value, what: &str) -> Result<Vec<i64>, String> {
    v.items()
        .ok_or_else(|| format!("{what} is {}, not a tuple", v.describe()))?
        .iter()
        .map(|d| {
            d.as_int()
                .ok_or_else(|| format!("{what} holds {}", d.describe()))
        })
        .collect()
}

fn rebuild_tensor(args: &[Value]) -> Result<Value, String> {
    let [storage, offset, size, stride, ..] = args else {
        return Err(format!("{} arguments, expected at least 4", args.len()));
    };
    let Value::Storage(storage) = storage else {
        return Err(format!("storage is {}", storage.describe()));
    };
    let offset = offset
        .as_int()
        .ok_or_else(|| format!("storage offset is {}", offset.describe()))?;
    Ok(Value::Tensor(Rc::new(TensorRef {
        storage: storage.clone(),
        offset,
        size: ints(size, "size")?,
        stride: ints(stride, "stride")?,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_pid(_: &Value) -> Result<Value, String> {
        Err("no persistent ids here".into())
    }

    #[test]
    fn reads_a_protocol_2_dict_with_memo_and_long() {
        // pickle.dumps({'a': [1, 2**40, -3], 'b': 'x'}, protocol=2) built by hand
        let data: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01\x8a\x06\x00\x00\x00\x00\x00\x01J\xfd\xff\xff\xffeX\x01\x00\x00\x00bq\x03X\x01\x00\x00\x00xq\x04u.";
        let v = unpickle(data, &mut no_pid).unwrap();
        let Value::Dict(d) = &v else {
            panic!("not a dict")
        };
        let d = d.borrow();
        assert_eq!(d.len(), 2);
        let list = d.get_str("a").unwrap().items().unwrap();
        let ints: Vec<_> = list.iter().map(|v| v.as_int().unwrap()).collect();
        assert_eq!(ints, vec![1, 1 << 40, -3]);
        assert_eq!(d.get_str("b").unwrap().as_str(), Some("x"));
    }

    #[test]
    fn hostile_lengths_and_truncation_are_errors() {
        // BINUNICODE declaring 4 GiB with 3 bytes behind it
        let e = unpickle(b"\x80\x02X\xff\xff\xff\xffabc", &mut no_pid).unwrap_err();
        assert!(e.contains("declares"), "{e}");
        let e = unpickle(b"\x80\x02}q\x00(", &mut no_pid).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        let e = unpickle(b"\x80\x02h\x07.", &mut no_pid).unwrap_err();
        assert!(e.contains("memo 7"), "{e}");
        let e = unpickle(b"\x80\x02s.", &mut no_pid).unwrap_err();
        assert!(e.contains("underflow"), "{e}");
        let e = unpickle(b"\xff", &mut no_pid).unwrap_err();
        assert!(e.contains("0xff"), "{e}");
    }

    #[test]
    fn unknown_callables_are_never_called() {
        // c os\nsystem\n (X 'echo' tR.  -> an opaque object, nothing runs
        let v = unpickle(b"cos\nsystem\n(X\x04\x00\x00\x00echotR.", &mut no_pid).unwrap();
        assert_eq!(v.describe(), "a os.system object");
    }

    #[test]
    fn a_later_value_replaces_an_earlier_one_in_place() {
        // {'a': 1, 'b': 2} then SETITEM 'a' = 3: Python keeps 'a' first, with 3.
        let data: &[u8] =
            b"\x80\x02}(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bK\x02uX\x01\x00\x00\x00aK\x03s.";
        let v = unpickle(data, &mut no_pid).unwrap();
        let Value::Dict(d) = &v else {
            panic!("not a dict")
        };
        let d = d.borrow();
        let items: Vec<_> = d
            .iter()
            .map(|(k, v)| (k.as_str().unwrap(), v.as_int().unwrap()))
            .collect();
        assert_eq!(items, [("a", 3), ("b", 2)]);
    }

    #[test]
    fn deep_and_cyclic_values_print_and_drop_in_bounded_stack() {
        // 200k nested lists, then a list appended to itself (memo 0, BINGET 0, APPEND).
        let depth = 200_000;
        let mut data = vec![op::PROTO, 2];
        data.extend(std::iter::repeat_n(op::EMPTY_LIST, depth));
        data.extend(std::iter::repeat_n(op::APPEND, depth - 1));
        data.push(op::STOP);
        let deep = unpickle(&data, &mut no_pid).unwrap();
        assert_eq!(format!("{deep:?}"), "List(len 1)");
        drop(deep);
        let cyclic = unpickle(b"\x80\x02]q\x00h\x00a.", &mut no_pid).unwrap();
        assert_eq!(format!("{cyclic:?}"), "List(len 1)");
    }
}
