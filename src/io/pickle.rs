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

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

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
    pub storage: StorageRef,
    pub offset: i64,
    pub size: Vec<i64>,
    pub stride: Vec<i64>,
}

pub type Shared<T> = Rc<RefCell<T>>;

/// A Python value, as far as a state_dict needs it.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too large for i64 (`LONG1`/`LONG4`); only its size is kept.
    BigInt,
    Float,
    Str(String),
    Bytes,
    Tuple(Rc<Vec<Value>>),
    List(Shared<Vec<Value>>),
    Dict(Shared<Vec<(Value, Value)>>),
    /// A class or function named by `GLOBAL`/`STACK_GLOBAL`: `module.name`.
    Global(Rc<str>),
    Storage(StorageRef),
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
            Value::Float => "a float".into(),
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

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

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

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
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

    fn utf8(&mut self, n: usize) -> Result<Value, String> {
        let bytes = self.take(n)?;
        let s = std::str::from_utf8(bytes).map_err(|_| "pickle: a string is not UTF-8")?;
        Ok(Value::Str(s.to_string()))
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

    fn memo_get(&self, i: u32) -> Result<Value, String> {
        self.memo
            .get(&i)
            .cloned()
            .ok_or_else(|| format!("pickle: memo {i} read before it was written"))
    }

    fn memo_put(&mut self, i: u32) -> Result<(), String> {
        let v = self.top()?.clone();
        self.memo.insert(i, v);
        Ok(())
    }

    fn run(mut self, persistent_load: &mut PersistentLoad) -> Result<Value, String> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(format!("pickle protocol {proto} is not supported"));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a size hint only
                }
                b'.' => return self.pop(), // STOP
                b'(' => self.stack.push(Value::Mark),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into().unwrap());
                    self.stack.push(Value::Int(v.into()))
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v.into()))
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v.into()))
                }
                0x8a | 0x8b => {
                    // LONG1 / LONG4: little-endian two's complement of n bytes.
                    let n = if op == 0x8a {
                        u64::from(self.u8()?)
                    } else {
                        u64::from(self.u32()?)
                    };
                    let n = self.len(n)?;
                    let bytes = self.take(n)?;
                    self.stack.push(long(bytes));
                }
                b'I' | b'L' => {
                    // INT / LONG (protocol 0): decimal text; "01"/"00" are True/False.
                    let line = self.line()?.trim_end_matches('L');
                    let v = match line {
                        "01" => Value::Bool(true),
                        "00" => Value::Bool(false),
                        _ => line.parse().map(Value::Int).unwrap_or(Value::BigInt),
                    };
                    self.stack.push(v)
                }
                b'G' => {
                    self.take(8)?;
                    self.stack.push(Value::Float)
                }
                b'F' => {
                    self.line()?
                        .parse::<f64>()
                        .map_err(|_| "pickle: bad FLOAT")?;
                    self.stack.push(Value::Float)
                }
                b'X' => {
                    let n = u64::from(self.u32()?);
                    let n = self.len(n)?;
                    let v = self.utf8(n)?;
                    self.stack.push(v)
                }
                0x8c => {
                    let n = u64::from(self.u8()?);
                    let n = self.len(n)?;
                    let v = self.utf8(n)?;
                    self.stack.push(v)
                }
                0x8d => {
                    let n = self.u64()?;
                    let n = self.len(n)?;
                    let v = self.utf8(n)?;
                    self.stack.push(v)
                }
                b'C' | b'B' | 0x8e | 0x96 => {
                    // SHORT_BINBYTES, BINBYTES, BINBYTES8, BYTEARRAY8: skipped, length kept.
                    let n = match op {
                        b'C' => u64::from(self.u8()?),
                        b'B' => u64::from(self.u32()?),
                        _ => self.u64()?,
                    };
                    let n = self.len(n)?;
                    self.take(n)?;
                    self.stack.push(Value::Bytes)
                }
                b')' => self.stack.push(Value::Tuple(Rc::new(Vec::new()))),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::new(items)))
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err("pickle: stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    if items.iter().any(|v| matches!(v, Value::Mark)) {
                        return Err("pickle: a MARK inside a tuple".into());
                    }
                    self.stack.push(Value::Tuple(Rc::new(items)))
                }
                b']' => self.stack.push(Value::List(Rc::default())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))))
                }
                b'}' => self.stack.push(Value::Dict(Rc::default())),
                b'd' => {
                    let items = self.pop_mark()?;
                    let dict = Value::Dict(Rc::default());
                    set_items(&dict, items)?;
                    self.stack.push(dict)
                }
                0x8f => self.stack.push(Value::List(Rc::default())), // EMPTY_SET
                0x90 | 0x91 => {
                    // ADDITEMS / FROZENSET: sets become lists.
                    let items = self.pop_mark()?;
                    if op == 0x91 {
                        self.stack.push(Value::List(Rc::new(RefCell::new(items))))
                    } else if let Value::List(l) = self.top()? {
                        l.borrow_mut().extend(items)
                    }
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(l) => l.borrow_mut().push(v),
                        other => return Err(format!("pickle: APPEND to {}", other.describe())),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.borrow_mut().extend(items),
                        // list subclasses and other objects: the items are not needed
                        Value::Object(_) => {}
                        other => return Err(format!("pickle: APPENDS to {}", other.describe())),
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?.clone();
                    set_items(&d, vec![k, v])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let d = self.top()?.clone();
                    set_items(&d, items)?
                }
                b'p' => {
                    let line = self.line()?;
                    let i = line.parse().map_err(|_| "pickle: bad PUT index")?;
                    self.memo_put(i)?
                }
                b'q' => {
                    let i = u32::from(self.u8()?);
                    self.memo_put(i)?
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len()).map_err(|_| "pickle: memo full")?;
                    self.memo_put(i)?
                }
                b'g' => {
                    let line = self.line()?;
                    let i = line.parse().map_err(|_| "pickle: bad GET index")?;
                    let v = self.memo_get(i)?;
                    self.stack.push(v)
                }
                b'h' => {
                    let i = u32::from(self.u8()?);
                    let v = self.memo_get(i)?;
                    self.stack.push(v)
                }
                b'j' => {
                    let i = self.u32()?;
                    let v = self.memo_get(i)?;
                    self.stack.push(v)
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack
                        .push(Value::Global(format!("{module}.{name}").into()))
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module.as_str(), name.as_str()) {
                        (Some(m), Some(n)) => {
                            self.stack.push(Value::Global(format!("{m}.{n}").into()))
                        }
                        _ => return Err("pickle: STACK_GLOBAL needs two strings".into()),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = reduce(&callable, &args)?;
                    self.stack.push(v)
                }
                0x81 | 0x92 => {
                    // NEWOBJ / NEWOBJ_EX: cls.__new__(cls, *args[, **kwargs])
                    if op == 0x92 {
                        self.pop()?;
                    }
                    self.pop()?;
                    let cls = self.pop()?;
                    self.stack.push(object_of(&cls))
                }
                b'b' => {
                    // BUILD: sets an object's state; nothing a state_dict needs.
                    self.pop()?;
                    self.top()?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = persistent_load(&pid)?;
                    self.stack.push(v)
                }
                b'0' => {
                    self.pop()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v)
                }
                b'1' => {
                    self.pop_mark()?;
                }
                0x97 => {} // READONLY_BUFFER
                _ => {
                    return Err(format!(
                        "pickle opcode 0x{op:02x} at offset {} is not supported",
                        self.pos - 1
                    ))
                }
            }
        }
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
                // A later value for the same key replaces the earlier one, as in Python.
                if let Some(slot) = d.iter_mut().find(|(old, _)| same_key(old, &k)) {
                    slot.1 = v;
                } else {
                    d.push((k, v));
                }
            }
            Ok(())
        }
        // dict subclasses pickled as objects: their items are not needed.
        Value::Object(_) => Ok(()),
        other => Err(format!("pickle: SETITEMS on {}", other.describe())),
    }
}

fn same_key(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Str(a), Value::Str(b)) => a == b,
        (Value::Int(a), Value::Int(b)) => a == b,
        _ => false,
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
        let Value::Dict(d) = v else {
            panic!("not a dict")
        };
        let d = d.borrow();
        assert_eq!(d.len(), 2);
        let list = d[0].1.items().unwrap();
        let ints: Vec<_> = list.iter().map(|v| v.as_int().unwrap()).collect();
        assert_eq!(ints, vec![1, 1 << 40, -3]);
        assert_eq!(d[1].1.as_str(), Some("x"));
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
}
