//! The portable values statements take and return: integers, text, bytes and NULL. Booleans
//! are integers (0/1) and times are microseconds since the epoch, on both engines.

use crate::StoreError;

/// A parameter or column value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer (`BIGINT` / `INTEGER`).
    Int(i64),
    /// Text.
    Text(String),
    /// Bytes (`BYTEA` / `BLOB`).
    Bytes(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Bytes(v.to_vec())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// One result row.
#[derive(Clone, Debug)]
pub struct Row(pub(crate) Vec<Value>);

impl Row {
    /// The columns from `from` on, as a row of their own (a joined query's second table).
    pub fn tail(&self, from: usize) -> Row {
        Row(self.0.get(from..).map(<[Value]>::to_vec).unwrap_or_default())
    }
    fn at(&self, i: usize) -> Result<&Value, StoreError> {
        self.0.get(i).ok_or_else(|| StoreError::Shape(format!("no column {i}")))
    }
    /// Column `i` as an integer.
    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        match self.at(i)? {
            Value::Int(v) => Ok(*v),
            other => Err(StoreError::Shape(format!(
                "column {i}: expected integer, got {}",
                kind(other)
            ))),
        }
    }
    /// Column `i` as an optional integer.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            other => Err(StoreError::Shape(format!(
                "column {i}: expected integer, got {}",
                kind(other)
            ))),
        }
    }
    /// Column `i` as text.
    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        match self.at(i)? {
            Value::Text(v) => Ok(v.clone()),
            other => Err(StoreError::Shape(format!(
                "column {i}: expected text, got {}",
                kind(other)
            ))),
        }
    }
    /// Column `i` as optional text.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Text(v) => Ok(Some(v.clone())),
            other => Err(StoreError::Shape(format!(
                "column {i}: expected text, got {}",
                kind(other)
            ))),
        }
    }
    /// Column `i` as bytes.
    pub fn bytes(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        match self.at(i)? {
            Value::Bytes(v) => Ok(v.clone()),
            other => Err(StoreError::Shape(format!(
                "column {i}: expected bytes, got {}",
                kind(other)
            ))),
        }
    }
    /// Column `i` as optional bytes.
    pub fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>, StoreError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Bytes(v) => Ok(Some(v.clone())),
            other => Err(StoreError::Shape(format!(
                "column {i}: expected bytes, got {}",
                kind(other)
            ))),
        }
    }
    /// Column `i` as a boolean stored as 0/1.
    pub fn bool(&self, i: usize) -> Result<bool, StoreError> {
        Ok(self.int(i)? != 0)
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Int(_) => "integer",
        Value::Text(_) => "text",
        Value::Bytes(_) => "bytes",
    }
}
