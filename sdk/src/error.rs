use std::fmt;

/// Why a record could not be processed, as the pipeline's logs and dead-letter
/// headers will show it.
///
/// Any standard error converts with `?`; add context with [`Error::msg`]:
/// `serde_json::from_slice(v).map_err(|e| Error::msg(format!("bad order: {e}")))?`.
pub struct Error {
    message: String,
}

impl Error {
    pub fn msg(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.message, f)
    }
}

/// Like `anyhow`, `Error` does not implement `std::error::Error` itself, which is what
/// lets every error that does convert into it.
impl<E: std::error::Error> From<E> for Error {
    fn from(error: E) -> Self {
        Self::msg(error)
    }
}
