//! The contract versions a component may be built against, and calling each one's
//! exports: the rest of the engine speaks the current contract's types and this module
//! translates for components of 0.2, which have no watermarks and no timers.

use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::bindings::{CONTRACT_VERSION, EARLIER_CONTRACT_VERSION, v0_2, v0_3};
use super::host::HostState;

/// What a guest's `process` or `on-timers` returns.
pub(crate) type CallResult = Result<v0_3::OutputBatch, v0_3::RecordError>;

/// A contract version this host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// 0.2.x: records and keyed state.
    V0_2,
    /// 0.3.x: event time too.
    V0_3,
}

impl Contract {
    /// The contract a component importing `version` of the package runs under: the
    /// same `0.minor` as one this host implements and a patch no newer than it, since a
    /// patch release only adds imports (wasmtime's linker then matches the older
    /// import names to ours).
    pub fn serving(version: &str) -> Option<Contract> {
        let (minor, patch) = minor_and_patch(version)?;
        [
            (Contract::V0_3, CONTRACT_VERSION),
            (Contract::V0_2, EARLIER_CONTRACT_VERSION),
        ]
        .into_iter()
        .find_map(|(contract, ours)| {
            let (our_minor, our_patch) = minor_and_patch(ours).expect("our versions parse");
            (minor == our_minor && patch <= our_patch).then_some(contract)
        })
    }

    /// Whether the guest has timers and meets watermarks.
    pub fn has_event_time(self) -> bool {
        self == Contract::V0_3
    }
}

/// `0.minor.patch` as (minor, patch); nothing else parses.
fn minor_and_patch(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split('.').map(str::parse::<u32>);
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(Ok(0)), Some(Ok(minor)), Some(Ok(patch)), None) => Some((minor, patch)),
        _ => None,
    }
}

/// A component pre-linked for the contract its exports fit.
pub(crate) enum Pre {
    V0_3(v0_3::TransformPre<HostState>),
    V0_2(v0_2::TransformPre<HostState>),
}

impl Pre {
    /// Pre-link `pre` as a transform of the current contract or, failing that, of
    /// 0.2. The error is the current contract's: that is what a new build must fit.
    pub(crate) fn new(pre: InstancePre<HostState>) -> wasmtime::Result<Pre> {
        match v0_3::TransformPre::new(pre.clone()) {
            Ok(current) => Ok(Pre::V0_3(current)),
            Err(error) => match v0_2::TransformPre::new(pre) {
                Ok(earlier) => Ok(Pre::V0_2(earlier)),
                Err(_) => Err(error),
            },
        }
    }

    pub(crate) fn contract(&self) -> Contract {
        match self {
            Pre::V0_3(_) => Contract::V0_3,
            Pre::V0_2(_) => Contract::V0_2,
        }
    }

    pub(crate) fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Exports> {
        Ok(match self {
            Pre::V0_3(pre) => Exports::V0_3(pre.instantiate(store)?),
            Pre::V0_2(pre) => Exports::V0_2(pre.instantiate(store)?),
        })
    }
}

/// A running instance's exports.
pub(crate) enum Exports {
    V0_3(v0_3::Transform),
    V0_2(v0_2::Transform),
}

impl Exports {
    pub(crate) fn call_init(
        &self,
        store: &mut Store<HostState>,
        config: &[(String, String)],
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Exports::V0_3(exports) => exports.call_init(store, config),
            Exports::V0_2(exports) => exports.call_init(store, config),
        }
    }

    /// `process` with `batch`. A 0.2 guest gets the batch without its watermarks; the
    /// buffers move over and back, so nothing is copied.
    pub(crate) fn call_process(
        &self,
        store: &mut Store<HostState>,
        batch: &mut v0_3::InputBatch,
    ) -> wasmtime::Result<CallResult> {
        match self {
            Exports::V0_3(exports) => exports.call_process(store, batch),
            Exports::V0_2(exports) => {
                let earlier = earlier_batch(batch);
                let result = exports.call_process(store, &earlier);
                restore_batch(batch, earlier);
                Ok(result?.map(current_outputs).map_err(current_error))
            }
        }
    }

    /// `on-timers` with `fired`; a 0.2 guest has none to fire.
    pub(crate) fn call_on_timers(
        &self,
        store: &mut Store<HostState>,
        fired: &v0_3::FiredTimers,
    ) -> wasmtime::Result<CallResult> {
        match self {
            Exports::V0_3(exports) => exports.call_on_timers(store, fired),
            Exports::V0_2(_) => Ok(Ok(super::records::empty_outputs())),
        }
    }
}

fn earlier_batch(batch: &mut v0_3::InputBatch) -> v0_2::InputBatch {
    use std::mem::take;
    v0_2::InputBatch {
        topic: take(&mut batch.topic),
        partition: batch.partition,
        offsets: take(&mut batch.offsets),
        timestamps: take(&mut batch.timestamps),
        key_lens: take(&mut batch.key_lens),
        value_lens: take(&mut batch.value_lens),
        header_counts: take(&mut batch.header_counts),
        header_lens: take(&mut batch.header_lens),
        data: take(&mut batch.data),
    }
}

fn restore_batch(batch: &mut v0_3::InputBatch, earlier: v0_2::InputBatch) {
    batch.topic = earlier.topic;
    batch.offsets = earlier.offsets;
    batch.timestamps = earlier.timestamps;
    batch.key_lens = earlier.key_lens;
    batch.value_lens = earlier.value_lens;
    batch.header_counts = earlier.header_counts;
    batch.header_lens = earlier.header_lens;
    batch.data = earlier.data;
}

fn current_outputs(outputs: v0_2::OutputBatch) -> v0_3::OutputBatch {
    v0_3::OutputBatch {
        key_lens: outputs.key_lens,
        value_lens: outputs.value_lens,
        topic_lens: outputs.topic_lens,
        timestamps: outputs.timestamps,
        header_counts: outputs.header_counts,
        header_lens: outputs.header_lens,
        data: outputs.data,
    }
}

fn current_error(error: v0_2::RecordError) -> v0_3::RecordError {
    v0_3::RecordError {
        index: error.index,
        message: error.message,
    }
}

#[cfg(test)]
mod tests {
    use super::Contract;

    #[test]
    fn components_of_a_served_minor_and_an_older_patch_run() {
        assert_eq!(Contract::serving("0.2.0"), Some(Contract::V0_2));
        assert_eq!(Contract::serving("0.2.2"), Some(Contract::V0_2));
        assert_eq!(
            Contract::serving(super::CONTRACT_VERSION),
            Some(Contract::V0_3)
        );
        for refused in [
            "0.2.99",
            "0.3.2",
            "0.1.0",
            "0.4.0",
            "1.3.0",
            "",
            "0.2",
            "0.2.0-rc1",
        ] {
            assert_eq!(Contract::serving(refused), None, "{refused}");
        }
    }
}
