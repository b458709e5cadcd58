use std::path::PathBuf;

/// Every failure the library reports. Messages are one line and name the
/// offending file, key or value, because they are printed verbatim by the CLI.
#[derive(Debug, thiserror::Error)]
pub enum HartError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A data file exists but its contents are wrong (bad magic, truncated, ...).
    #[error("{}: {msg}", path.display())]
    Data { path: PathBuf, msg: String },
    /// A model file or architecture cannot be loaded or built.
    #[error("{0}")]
    Model(String),
    /// An ONNX operator (or attribute combination) HART does not implement.
    #[error("unsupported ONNX operator {}", .0.escape_debug())]
    UnsupportedOp(String),
    /// A bad argument or configuration value.
    #[error("{0}")]
    Invalid(String),
    /// `hart experiment`: a stage that was to be read from the cache is not
    /// there and this run may not compute it (the cache directory's name).
    #[error("{0} is not in the stage cache")]
    NotCached(String),
    /// A stop was requested (`interrupt::request`) while the call ran.
    #[error("interrupted: the finished part is on disk and the same call resumes from it")]
    Interrupted,
    #[error("libtorch: {}", first_line(&.0.to_string()))]
    Torch(#[from] tch::TchError),
}

/// libtorch errors carry a multi-line C++ backtrace; the first line is the message.
fn first_line(s: &str) -> &str {
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or(s).trim()
}

impl HartError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HartError::Io {
            path: path.into(),
            source,
        }
    }
    /// Decoders' messages (image, csv, ...) may end in or hold newlines: keep one line.
    pub fn data(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        HartError::Data {
            path: path.into(),
            msg: msg.into().trim_end().replace('\n', " "),
        }
    }
}

pub type Result<T, E = HartError> = std::result::Result<T, E>;
