//! How the daemon-wide `[memory]` bounds are shared out among the Kafka clients that
//! hold the memory: pure arithmetic, kept apart so that it is tested on its own.

use crate::config::Config;

/// librdkafka's `queue.buffering.max.kbytes` for each producer: `output_buffer_bytes`
/// shared evenly by every processing thread's producers (one per guarantee), but at
/// least [`RECORDS_PER_QUEUE`] of the largest record a producer may be given: librdkafka
/// refuses a record larger than the whole queue as "queue full" however long the
/// sender waits. On a host of many cores the floor can take the producers together
/// past `output_buffer_bytes`.
pub fn output_queue_kbytes(config: &Config) -> u64 {
    let producers = 2 * config.threads().max(1) as u64;
    let share = config.memory.output_buffer_bytes / producers;
    share.max(RECORDS_PER_QUEUE * largest_record(config)) / 1024
}

/// Records of the largest size each producer's queue holds at least.
const RECORDS_PER_QUEUE: u64 = 4;

/// A dead letter's largest size: an input record as large as a topic allows by
/// default (the broker's `message.max.bytes`, 1 MiB) with Weir's headers (the error
/// cut to 4 KiB, and a few short ones).
const LARGEST_DEAD_LETTER: u64 = (1 << 20) + (16 << 10);

/// The largest record a producer may be given: an output (`max_output_bytes`), a
/// changelog record (a state key and value, and its framing) or a dead letter.
fn largest_record(config: &Config) -> u64 {
    config
        .pipelines
        .values()
        .map(|p| {
            let limits = &p.limits;
            let state =
                u64::from(limits.max_state_key_bytes) + u64::from(limits.max_state_value_bytes);
            limits.max_output_bytes.max(state + 1024)
        })
        .max()
        .unwrap_or(0)
        .max(LARGEST_DEAD_LETTER)
}

/// The fetch-ahead bound of each input partition of a pipeline whose inputs have
/// `partitions` partitions: `fetch_buffer_bytes` shared evenly by the configured
/// pipelines, and a pipeline's share evenly by its input partitions (a member may come
/// to own them all). `queued` is librdkafka's `queued.max.messages.kbytes`, `fetch`
/// its `fetch.message.max.bytes`: a fetch can overshoot the queue by one fetch, so the
/// two together stay within the partition's share when it is at least
/// 2 x [`MIN_FETCH_BYTES`]; below that each is [`MIN_FETCH_BYTES`] (a record larger than
/// a fetch still arrives, alone), and the partitions together can pass the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchBounds {
    pub queued_kbytes: u64,
    pub fetch_bytes: u64,
}

/// The smallest fetch-ahead per partition, whatever the share: below this, fetches are
/// too small to keep a partition busy.
pub const MIN_FETCH_BYTES: u64 = 64 << 10;
/// librdkafka's own fetch size per partition, which a share never raises.
const MAX_FETCH_BYTES: u64 = 1 << 20;
/// The largest `queued.max.messages.kbytes` librdkafka accepts.
const MAX_QUEUED_KBYTES: u64 = 2_097_151;

pub fn fetch_bounds(config: &Config, partitions: u64) -> FetchBounds {
    let pipelines = config.pipelines.len().max(1) as u64;
    let share = config.memory.fetch_buffer_bytes / pipelines / partitions.max(1);
    let fetch_bytes = (share / 2).clamp(MIN_FETCH_BYTES, MAX_FETCH_BYTES);
    let queued = share.saturating_sub(fetch_bytes).max(MIN_FETCH_BYTES);
    FetchBounds {
        queued_kbytes: (queued / 1024).min(MAX_QUEUED_KBYTES),
        fetch_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(threads: u32, pipelines: usize) -> Config {
        let mut text = format!("threads = {threads}\n[kafka]\nbrokers = \"embedded\"\n");
        for i in 0..pipelines {
            text.push_str(&format!(
                "[pipelines.p{i}]\nmodule = \"t.wasm\"\ninputs = [\"in{i}\"]\noutput = \"out{i}\"\n"
            ));
        }
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn the_output_buffer_is_shared_by_every_producer() {
        // 256 MiB over 4 threads of 2 producers: 32 MiB each.
        assert_eq!(output_queue_kbytes(&config(4, 1)), 32 << 10);
        assert_eq!(output_queue_kbytes(&config(1, 1)), 128 << 10);
        // 128 threads: 1 MiB each would not hold one dead letter of a 1 MiB record; a
        // queue holds four of the largest record (here a dead letter) whatever the share.
        assert_eq!(
            output_queue_kbytes(&config(128, 1)),
            4 * LARGEST_DEAD_LETTER / 1024
        );
    }

    #[test]
    fn a_huge_fetch_buffer_stays_within_what_librdkafka_accepts() {
        let mut one = config(2, 1);
        one.memory.fetch_buffer_bytes = 64 << 30;
        assert_eq!(fetch_bounds(&one, 1).queued_kbytes, MAX_QUEUED_KBYTES);
    }

    #[test]
    fn the_fetch_buffer_is_shared_by_pipelines_then_partitions() {
        // 256 MiB for 2 pipelines of 8 partitions: 16 MiB a partition, of which a
        // fetch of librdkafka's 1 MiB at most.
        let few = fetch_bounds(&config(2, 2), 8);
        assert_eq!(few.fetch_bytes, 1 << 20);
        assert_eq!(few.queued_kbytes, 15 << 10);
        // 10 pipelines of 100 partitions: 262 KiB a partition, half of it a fetch.
        let many = fetch_bounds(&config(2, 10), 100);
        let share = (256 << 20) / 1000;
        assert_eq!(many.fetch_bytes, share / 2);
        assert!(many.queued_kbytes * 1024 + many.fetch_bytes <= share);
        // Past the floor, a partition keeps a usable fetch rather than the share.
        let floor = fetch_bounds(&config(2, 100), 1000);
        assert_eq!(floor.fetch_bytes, MIN_FETCH_BYTES);
        assert_eq!(floor.queued_kbytes, MIN_FETCH_BYTES / 1024);
    }
}
