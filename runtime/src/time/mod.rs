//! Event time: the partition's watermark, the timers a transform sets, and where a
//! batch must be cut so that timers fire between the right records.
//!
//! Pure decision logic, no I/O: the engine serves the `timers` import with
//! [`timers`], the pipeline keeps a partition's [`EventClock`] and cuts its batches with
//! [`segment`]. Timers and the clock are stored as ordinary state entries under
//! [`timers::RESERVED_PREFIX`], a key range transforms cannot read or write, so they are
//! buffered, checkpointed with the outputs their firing makes, changelogged and
//! restored exactly like the transform's own state, and survive hot swaps.

pub mod clock;
pub mod queue;
pub mod segment;
pub mod timers;
pub mod watermark;

pub use clock::ManualClock;
pub use timers::{TimeDomain, Timer};
pub use watermark::EventClock;
