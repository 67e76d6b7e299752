//! Tables: compacted topics a pipeline declares, kept materialized by the host in each
//! partition's store, co-partitioned with the inputs, for transforms to look keys up
//! in (a stream-table join).
//!
//! A table's topic is its own changelog, as a Kafka Streams source table's is: its rows
//! live in the partition's store under keys the host reserves ([`keys`]) and never go
//! to the pipeline's changelog. What the changelog does carry is how far into the
//! table topic each checkpoint had read, so a partition restored on another machine
//! reads the table topic up to exactly there before it processes a record, and sees
//! the table each of its records saw before (but for keys whose older records
//! compaction removed, as in Kafka Streams).
//!
//! The parts: [`keys`] (where rows and positions are stored) and [`order`] (which
//! comes next, a table record or a stream record: timestamp order), both pure; the
//! reading is the task's (`pipeline::task::tables`).

pub mod keys;
pub mod order;

/// A table as the pipeline declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// What transforms call it (`tables.get(name, key)`).
    pub name: String,
    /// The compacted topic it is read from.
    pub topic: String,
}
