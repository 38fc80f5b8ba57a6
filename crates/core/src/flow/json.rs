//! A cursor over posted JSON that remembers its pointer, so every parse
//! error says where it happened.

use super::{escape_token, FlowError, FlowErrorKind};
use serde_json::{Map, Value};

pub(crate) struct At<'a> {
    pub value: &'a Value,
    pub ptr: String,
}

impl<'a> At<'a> {
    pub fn new(value: &'a Value, ptr: impl Into<String>) -> Self {
        At {
            value,
            ptr: ptr.into(),
        }
    }

    pub fn err(&self, kind: FlowErrorKind) -> FlowError {
        FlowError::new(self.ptr.clone(), kind)
    }

    pub fn malformed(&self, detail: impl Into<String>) -> FlowError {
        self.err(FlowErrorKind::Malformed(detail.into()))
    }

    pub fn ptr_of(&self, key: &str) -> String {
        format!("{}/{}", self.ptr, escape_token(key))
    }

    /// The member `key`, or `None` when absent or null.
    pub fn get(&self, key: &str) -> Option<At<'a>> {
        match self.value.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(At::new(v, self.ptr_of(key))),
        }
    }

    pub fn req(&self, key: &str) -> Result<At<'a>, FlowError> {
        self.get(key)
            .ok_or_else(|| FlowError::new(self.ptr_of(key), FlowErrorKind::Missing(key.into())))
    }

    pub fn object(&self) -> Result<&'a Map<String, Value>, FlowError> {
        self.value
            .as_object()
            .ok_or_else(|| self.malformed("must be an object"))
    }

    pub fn str(&self) -> Result<&'a str, FlowError> {
        self.value
            .as_str()
            .ok_or_else(|| self.malformed("must be a string"))
    }

    pub fn i64(&self) -> Result<i64, FlowError> {
        self.value
            .as_i64()
            .ok_or_else(|| self.malformed("must be an integer"))
    }

    pub fn f64(&self) -> Result<f64, FlowError> {
        self.value
            .as_f64()
            .filter(|f| f.is_finite())
            .ok_or_else(|| self.malformed("must be a number"))
    }

    pub fn bool(&self) -> Result<bool, FlowError> {
        self.value
            .as_bool()
            .ok_or_else(|| self.malformed("must be a boolean"))
    }

    pub fn items(&self) -> Result<Vec<At<'a>>, FlowError> {
        let arr = self
            .value
            .as_array()
            .ok_or_else(|| self.malformed("must be an array"))?;
        Ok(arr
            .iter()
            .enumerate()
            .map(|(i, v)| At::new(v, format!("{}/{}", self.ptr, i)))
            .collect())
    }

    pub fn req_str(&self, key: &str) -> Result<&'a str, FlowError> {
        self.req(key)?.str()
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, FlowError> {
        self.get(key).map(|a| a.str()).transpose()
    }

    pub fn strings(&self) -> Result<Vec<String>, FlowError> {
        self.items()?
            .iter()
            .map(|a| a.str().map(str::to_owned))
            .collect()
    }

    /// A string member restricted to `allowed`; the error lists the choices.
    pub fn choice(&self, key: &str, allowed: &[&str]) -> Result<&'a str, FlowError> {
        let at = self.req(key)?;
        let s = at.str()?;
        if allowed.contains(&s) {
            Ok(s)
        } else {
            Err(at.malformed(format!("'{s}' is not one of: {}", allowed.join(", "))))
        }
    }
}
