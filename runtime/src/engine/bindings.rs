//! Host bindings generated from `wit/`, the only copy of the contract, for each
//! contract version this host runs: the current one (`wit/transform.wit`, re-exported
//! here) and 0.2 (`wit/0.2/`), whose components run unchanged.
//!
//! Every import is `trappable` so a host import can stop the guest: a state-store
//! failure (a host problem) or a write over the size limits (a guest fault) must end
//! the call, not be silently swallowed. The generated batch types are the wire form;
//! the rest of the host uses the records of [`super::records`].

/// The current contract, 0.3: event time (watermarks on each batch, timers).
pub mod v0_3 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "transform",
        imports: { default: trappable },
        additional_derives: [PartialEq, Eq],
    });
}

/// Contract 0.2: batches without watermarks, no timers.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/0.2",
        world: "transform",
        imports: { default: trappable },
        additional_derives: [PartialEq, Eq],
    });
}

pub use v0_3::*;

/// The contract version this host implements, as it appears in import names.
pub const CONTRACT_VERSION: &str = "0.3.1";
/// The earlier `0.minor` whose components this host still runs, newest patch.
pub const EARLIER_CONTRACT_VERSION: &str = "0.2.2";
/// The contract's package name.
pub const CONTRACT_PACKAGE: &str = "weir:transform";
