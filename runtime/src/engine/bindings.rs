//! Host bindings generated from `wit/`, the only copy of the contract.
//!
//! Every import is `trappable` so a host import can stop the guest: a state-store
//! failure (a host problem) or a write over the size limits (a guest fault) must end
//! the call, not be silently swallowed. The generated batch types are the wire form;
//! the rest of the host uses the records of [`super::records`].

wasmtime::component::bindgen!({
    path: "../wit",
    world: "transform",
    imports: { default: trappable },
    additional_derives: [PartialEq, Eq],
});

/// The contract version this host implements, as it appears in import names.
pub const CONTRACT_VERSION: &str = "0.2.2";
/// The contract's package name.
pub const CONTRACT_PACKAGE: &str = "weir:transform";
