//! Host bindings generated from `wit/`, the only copy of the contract.
//!
//! Every import is `trappable` so a host import can stop the guest: a state-store
//! failure (a host problem) or a write over the size limits (a guest fault) must end
//! the call, not be silently swallowed.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "transform",
    imports: { default: trappable },
    additional_derives: [PartialEq, Eq],
});

pub use weir::transform::types::Header;

/// The contract version this host implements, as it appears in import names.
pub const CONTRACT_VERSION: &str = "0.1.0";
/// The contract's package name.
pub const CONTRACT_PACKAGE: &str = "weir:transform";

impl InputRecord {
    /// A record with only a value, at `offset` of `topic`/`partition`: for tests,
    /// benchmarks and tools that make records up.
    pub fn from_value(topic: &str, partition: i32, offset: i64, value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp: 0,
            topic: topic.to_owned(),
            partition,
            offset,
        }
    }
}
