//! Engine errors as Python exceptions, in one place: each `HartError`
//! becomes the class of `hart/_errors.py` that fits it (a subclass of
//! `hart.HartError` and, where one fits, of ValueError, FileNotFoundError,
//! OSError or RuntimeError), carrying the CLI's one-line message.

use hart::HartError;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// The Python exception for `e`.
pub fn to_py(py: Python<'_>, e: HartError) -> PyErr {
    raise(py, class_of(&e), e.to_string())
}

/// An instance of `hart._errors.<class>` with `msg`, or a RuntimeError if
/// that module cannot be imported (the package is broken).
pub fn raise(py: Python<'_>, class: &str, msg: String) -> PyErr {
    let made = py
        .import("hart._errors")
        .and_then(|m| m.getattr(class))
        .and_then(|cls| cls.call1((msg.clone(),)));
    match made {
        Ok(obj) => PyErr::from_value(obj),
        Err(_) => PyRuntimeError::new_err(msg),
    }
}

fn class_of(e: &HartError) -> &'static str {
    match e {
        HartError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => "NotFoundError",
        HartError::Io { .. } => "HartIOError",
        // Loaders report a missing file or folder as a data error naming it.
        HartError::Data { path, .. } if !path.exists() => "NotFoundError",
        HartError::Data { .. } => "DataError",
        HartError::Model(_) => "ModelError",
        HartError::UnsupportedOp(_) => "UnsupportedOperatorError",
        HartError::Invalid(_) | HartError::NotCached(_) => "InvalidArgumentError",
        HartError::Torch(_) => "TorchError",
        HartError::Interrupted => "Interrupted",
    }
}

/// Bad arguments found by the binding itself.
pub fn invalid(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    raise(py, "InvalidArgumentError", msg.into())
}
