//! `weir:transform/tables` (0.3.1): reads of the tables the pipeline declares, which
//! the host keeps in the partition's store under its reserved keys
//! ([`crate::table::keys`]). Read only: rows change only as the table topic does.

use wasmtime::Result;

use super::HostState;
use super::state::MAX_SCAN_PAGE;
use crate::engine::GuestFault;
use crate::engine::bindings::weir::transform::state::Entry;
use crate::engine::bindings::weir::transform::tables::Host;
use crate::table::keys;

impl HostState {
    /// `name` if the pipeline declares it, else the fault that names the ones it does.
    fn declared(&self, name: &str) -> Result<(), GuestFault> {
        if self.tables.iter().any(|t| t == name) {
            return Ok(());
        }
        let declared = if self.tables.is_empty() {
            "none".to_owned()
        } else {
            format!("{:?}", self.tables)
        };
        Err(GuestFault::UnknownTable {
            name: name.to_owned(),
            declared,
        })
    }
}

impl Host for HostState {
    fn get(&mut self, table: String, key: Vec<u8>) -> Result<Option<Vec<u8>>> {
        self.declared(&table)?;
        Ok(self.state.get(&keys::row_key(&table, &key))?)
    }

    fn scan(
        &mut self,
        table: String,
        prefix: Vec<u8>,
        start_after: Option<Vec<u8>>,
        limit: u32,
    ) -> Result<Vec<Entry>> {
        self.declared(&table)?;
        let limit = limit.min(MAX_SCAN_PAGE);
        let rows = keys::rows_prefix(&table);
        let within = |key: &[u8]| [&rows[..], key].concat();
        let max_bytes = usize::try_from(self.max_scan_bytes).unwrap_or(usize::MAX);
        let page = self
            .state
            .scan_within(
                &within(&prefix),
                start_after.as_deref().map(within).as_deref(),
                limit as usize,
                max_bytes,
            )?
            .ok_or(GuestFault::ScanTooLarge {
                limit: self.max_scan_bytes,
                asked: limit,
            })?;
        Ok(page
            .into_iter()
            .map(|e| Entry {
                key: e.key[rows.len()..].to_vec(),
                value: e.value,
            })
            .collect())
    }
}
