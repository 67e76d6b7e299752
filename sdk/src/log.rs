//! Log lines into the host's logs, tagged with pipeline, partition and module version.
//! Natively (tests) they go to stderr.

use crate::bindings::weir::transform::log::Level;

fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::weir::transform::log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

pub fn trace(message: &str) {
    log(Level::Trace, message)
}

pub fn debug(message: &str) {
    log(Level::Debug, message)
}

pub fn info(message: &str) {
    log(Level::Info, message)
}

pub fn warn(message: &str) {
    log(Level::Warn, message)
}

pub fn error(message: &str) {
    log(Level::Error, message)
}
