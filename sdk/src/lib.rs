//! Write Weir stream transforms in Rust.
//!
//! Implement [`Transform`] for a type, register it with [`export!`], and build for
//! `wasm32-wasip2`: the result is a WebAssembly component the Weir host runs over a
//! Kafka stream, with keyed state the host keeps in RocksDB and checkpoints with the
//! input offsets. The same code runs natively under [`testing::Harness`], so a
//! transform is unit-tested with plain `cargo test`.
//!
//! ```
//! use weir_sdk::{Config, Context, Error, Record, Transform};
//!
//! /// Counts words and emits each word with its running count.
//! struct WordCount;
//!
//! impl Transform for WordCount {
//!     fn init(_config: &Config) -> Result<Self, Error> {
//!         Ok(WordCount)
//!     }
//!
//!     fn process(&mut self, record: Record, ctx: &mut Context<'_>) -> Result<(), Error> {
//!         for word in record.value_str()?.split_whitespace() {
//!             let count = ctx.table::<u64>("count/").update(word, |n| n.unwrap_or(0) + 1)?;
//!             ctx.send(word, count.to_string());
//!         }
//!         Ok(())
//!     }
//! }
//!
//! weir_sdk::export!(WordCount);
//!
//! // Natively, with an in-memory state:
//! let mut harness = weir_sdk::testing::Harness::<WordCount>::new()?;
//! harness.process_value("to be or not to be")?;
//! let out = harness.process_value("be")?;
//! assert_eq!(out[0].value_str()?, "3");
//! # Ok::<(), weir_sdk::Error>(())
//! ```
//!
//! Records that fail (`process` returns an error) are handled by the pipeline's error
//! policy: skipped, sent to a dead-letter topic, or stopping the pipeline. The host
//! discards every state write and output of a failed record.

// Lets the generated bindings and `export!` name this crate the same way from inside
// and outside it.
extern crate self as weir_sdk;

#[cfg(any(
    all(
        target_arch = "wasm32",
        not(target_feature = "atomics"),
        feature = "allocator"
    ),
    test
))]
mod alloc;
mod config;
mod context;
mod error;
pub mod log;
mod record;
pub mod testing;
pub mod time;
pub mod window;
#[cfg(any(target_arch = "wasm32", test))]
mod wire;
#[cfg(any(target_arch = "wasm32", test))]
mod writes;

/// Bindings generated from the Weir WIT contract (`wit/` in the Weir repository).
#[doc(hidden)]
pub mod bindings {
    // The generated code passes a `fired-timers` in its flattened parts.
    #![allow(clippy::too_many_arguments)]
    wit_bindgen::generate!({
        path: "../wit",
        world: "transform",
        pub_export_macro: true,
        export_macro_name: "__export_transform_bindings",
        default_bindings_module: "weir_sdk::bindings",
        runtime_path: "weir_sdk::__private::wit_bindgen::rt",
    });
}

/// Small blocks come from free lists of their size class (see `alloc`); turn off the
/// `allocator` feature to register an allocator of your own.
#[cfg(all(
    target_arch = "wasm32",
    not(target_feature = "atomics"),
    feature = "allocator"
))]
#[global_allocator]
static ALLOCATOR: alloc::Allocator = alloc::Allocator::new();

pub use config::Config;
pub use context::{Context, KafkaTable, Scan, State, StateBackend, Table};
pub use error::Error;
pub use record::{Header, Output, Record};
pub use time::{TimeDomain, Timer};

/// A stream transform: built once per instance from the pipeline's configuration,
/// then called for each record of its partitions, in offset order.
pub trait Transform: Sized + 'static {
    /// Build the transform from the pipeline's `[transform.config]` entries.
    /// An error refuses the module: it is never deployed.
    fn init(config: &Config) -> Result<Self, Error>;

    /// Process one record: read and write state and emit outputs through `ctx`.
    fn process(&mut self, record: Record, ctx: &mut Context<'_>) -> Result<(), Error>;

    /// A timer set with [`Context::set_timer`] fired: its time has come. Outputs
    /// emitted here default to the timer's time as their timestamp. An error is
    /// handled like a failed record's, by the pipeline's error policy.
    fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_>) -> Result<(), Error> {
        let _ = (timer, ctx);
        Ok(())
    }
}

/// Run `records` through `transform` with `state`, exactly as the Wasm export does:
/// outputs in order, or the index and message of the first record that failed.
///
/// Hosts that embed a transform natively (the harness, benchmarks) call this.
pub fn run_batch<T: Transform>(
    transform: &mut T,
    records: Vec<Record>,
    state: &mut dyn StateBackend,
) -> Result<Vec<Output>, bindings::RecordError> {
    run_timed_batch(transform, records, &[], state)
}

/// [`run_batch`] with the watermark each record meets (`watermarks[i]` for record
/// `i`; [`time::NO_WATERMARK`] past its end).
pub fn run_timed_batch<T: Transform>(
    transform: &mut T,
    records: Vec<Record>,
    watermarks: &[i64],
    state: &mut dyn StateBackend,
) -> Result<Vec<Output>, bindings::RecordError> {
    let mut outputs = Vec::new();
    let mut scratch = context::Scratch::default();
    for (index, record) in records.into_iter().enumerate() {
        let watermark = watermarks.get(index).copied().unwrap_or(time::NO_WATERMARK);
        let mut ctx = Context::new(
            state,
            &mut outputs,
            &mut scratch,
            record.timestamp,
            watermark,
        );
        transform
            .process(record, &mut ctx)
            .map_err(|error| bindings::RecordError {
                index: index as u32,
                message: error.to_string(),
            })?;
    }
    Ok(outputs)
}

/// Run fired `timers` through `transform`'s [`Transform::on_timer`], at `watermark`:
/// outputs in order, or the index and message of the first timer that failed.
pub fn run_timers<T: Transform>(
    transform: &mut T,
    timers: Vec<Timer>,
    watermark: i64,
    state: &mut dyn StateBackend,
) -> Result<Vec<Output>, bindings::RecordError> {
    let mut outputs = Vec::new();
    let mut scratch = context::Scratch::default();
    for (index, timer) in timers.into_iter().enumerate() {
        let mut ctx = Context::new(state, &mut outputs, &mut scratch, timer.at, watermark);
        transform
            .on_timer(timer, &mut ctx)
            .map_err(|error| bindings::RecordError {
                index: index as u32,
                message: error.to_string(),
            })?;
    }
    Ok(outputs)
}

/// Make `$ty` (a [`Transform`]) the transform this component exports.
///
/// Use it once, in the crate that builds the component. It expands to nothing outside
/// `wasm32`, so the crate also builds natively for tests and benchmarks.
#[macro_export]
macro_rules! export {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            ::std::thread_local! {
                static TRANSFORM: ::core::cell::RefCell<::core::option::Option<$ty>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            struct Export;

            impl $crate::bindings::Guest for Export {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    TRANSFORM.with(|slot| $crate::__private::init(slot, config))
                }

                fn process(
                    batch: $crate::bindings::InputBatch,
                ) -> ::core::result::Result<
                    $crate::bindings::OutputBatch,
                    $crate::bindings::RecordError,
                > {
                    TRANSFORM.with(|slot| $crate::__private::process(slot, batch))
                }

                fn on_timers(
                    fired: $crate::bindings::FiredTimers,
                ) -> ::core::result::Result<
                    $crate::bindings::OutputBatch,
                    $crate::bindings::RecordError,
                > {
                    TRANSFORM.with(|slot| $crate::__private::on_timers(slot, fired))
                }
            }

    $crate::bindings::__export_transform_bindings!(Export with_types_in $crate::bindings);
        };
    };
}

#[doc(hidden)]
pub mod __private {
    use std::cell::RefCell;

    pub use wit_bindgen;

    #[cfg(target_arch = "wasm32")]
    use crate::bindings::{FiredTimers, InputBatch, OutputBatch, RecordError};
    use crate::{Config, Transform};

    pub fn init<T: Transform>(
        slot: &RefCell<Option<T>>,
        config: Vec<(String, String)>,
    ) -> Result<(), String> {
        let transform = T::init(&Config::from(config)).map_err(|e| e.to_string())?;
        *slot.borrow_mut() = Some(transform);
        Ok(())
    }

    /// The transform in `slot`, or the error of a call before `init`.
    #[cfg(target_arch = "wasm32")]
    fn initialized<'a, T>(slot: &'a mut Option<T>, call: &str) -> Result<&'a mut T, RecordError> {
        slot.as_mut().ok_or_else(|| RecordError {
            index: 0,
            message: format!("{call} was called before init"),
        })
    }

    /// Run `f` with the component's state; the writes it kept go to the host if it
    /// succeeds, and are dropped if it fails, as the host rolls the call back.
    #[cfg(target_arch = "wasm32")]
    fn with_state(
        f: impl FnOnce(&mut crate::context::WasmState) -> Result<Vec<crate::Output>, RecordError>,
    ) -> Result<OutputBatch, RecordError> {
        crate::context::WasmState::with(|state| match f(state) {
            Ok(outputs) => {
                state.flush();
                Ok(crate::wire::encode(outputs))
            }
            Err(error) => {
                state.discard();
                Err(error)
            }
        })
    }

    #[cfg(target_arch = "wasm32")]
    pub fn process<T: Transform>(
        slot: &RefCell<Option<T>>,
        batch: InputBatch,
    ) -> Result<OutputBatch, RecordError> {
        let mut slot = slot.borrow_mut();
        let transform = initialized(&mut slot, "process")?;
        let (records, watermarks) = crate::wire::decode(batch);
        with_state(|state| crate::run_timed_batch(transform, records, &watermarks, state))
    }

    #[cfg(target_arch = "wasm32")]
    pub fn on_timers<T: Transform>(
        slot: &RefCell<Option<T>>,
        fired: FiredTimers,
    ) -> Result<OutputBatch, RecordError> {
        let mut slot = slot.borrow_mut();
        let transform = initialized(&mut slot, "on-timers")?;
        let watermark = fired.watermark;
        let timers = crate::wire::decode_timers(fired);
        with_state(|state| crate::run_timers(transform, timers, watermark, state))
    }
}
