//! Entry points for the fuzz targets in `fuzz/` (cargo fuzz, on a nightly toolchain),
//! one per parser of untrusted input: JSON-lines fixtures, config files, changelog
//! records (framing and the restore rules) and the layouts a guest hands the host
//! (output batches, batched state writes).
//!
//! Each takes arbitrary bytes and panics only on a finding: a parser that panics, or a
//! property that does not hold (what `weir test` prints reads back the same; a restore
//! decides each record at most once; a layout that decodes uses every byte). The test
//! suite replays every input kept under `fuzz/corpus/` through the same functions on
//! the stable toolchain, so a fixed finding stays fixed.

use crate::config::{Config, ParseError};
use crate::engine::bindings::weir::transform::state::Writes;
use crate::engine::bindings::weir::transform::types::OutputBatch;
use crate::jsonl;
use crate::state::changelog::{Decision, Framer, Identity, Local, RawRecord, Restorer};

/// JSON-lines inputs and expected outputs (`weir test` fixtures).
pub fn jsonl(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = jsonl::parse_inputs(text, "fuzz");
    if let Ok(outputs) = jsonl::parse_outputs(text) {
        let rendered: String = outputs
            .iter()
            .map(|o| jsonl::render_output(o) + "\n")
            .collect();
        let again = jsonl::parse_outputs(&rendered)
            .unwrap_or_else(|e| panic!("rendered outputs do not parse: {e:?}\n{rendered}"));
        // The same by `weir test`'s comparison, which is by content: a payload that is
        // JSON compares (and prints) as its value, so `" [1]"` and `"[1]"` are one.
        assert_eq!(
            jsonl::diff(&outputs, &again),
            None,
            "outputs do not read back as rendered"
        );
        // And printing what was read back prints the same lines.
        let again_rendered: String = again
            .iter()
            .map(|o| jsonl::render_output(o) + "\n")
            .collect();
        assert_eq!(again_rendered, rendered, "rendering is not stable");
    }
}

/// A config file: parsed and validated, or refused with at least one problem.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(ParseError(problems)) = Config::parse(text, std::path::Path::new("/nonexistent")) {
        assert!(!problems.is_empty(), "a refused config names no problem");
    }
}

/// Changelog records, framed and restored: whatever the records, the restore decides
/// each at most once.
pub fn changelog(data: &[u8]) {
    let mut bytes = Bytes(data);
    let local = Local {
        head: u64::from(bytes.byte() % 4),
        offset: bytes.offset(),
    };
    let committed = bytes.offset();
    let mut framer = Framer::new();
    let mut framed = Vec::new();
    let mut offset = 0;
    while !bytes.0.is_empty() {
        let identity = (bytes.byte() % 3 == 0).then(|| Identity {
            checkpoint: u64::from(bytes.byte() % 6),
            parent: u64::from(bytes.byte() % 6),
            input_offset: i64::from(bytes.byte() % 8),
        });
        let key_len = usize::from(bytes.peek() % 3);
        let key = bytes.take(key_len).to_vec();
        let value = (bytes.byte() % 4 != 0).then(|| bytes.take(1).to_vec());
        offset += 1 + i64::from(bytes.byte() % 2);
        framer.push(
            RawRecord {
                offset,
                identity,
                key,
                value,
            },
            &mut framed,
        );
    }
    let _ = framer.finish();
    let pushed = framed.len();
    let mut restorer = Restorer::new(local, committed);
    let mut decided = std::collections::HashSet::new();
    let mut count = |decisions: &[Decision]| {
        for Decision::Apply(block) | Decision::Discard(block) in decisions {
            for record in &block.records {
                assert!(
                    decided.insert(record.offset),
                    "changelog offset {} decided twice",
                    record.offset
                );
            }
        }
    };
    for record in framed {
        match restorer.push(record) {
            Ok(decisions) => count(&decisions),
            Err(_) => return,
        }
    }
    if let Ok((decisions, _head)) = restorer.finish() {
        count(&decisions);
    }
    assert!(
        decided.len() <= pushed,
        "{} records decided of {pushed} pushed",
        decided.len()
    );
}

/// An output batch as a guest returns it, and a `write-all` of state writes: decoded,
/// or refused as a contract violation; what decodes accounts for every byte.
pub fn batch_layout(data: &[u8]) {
    let mut bytes = Bytes(data);
    let n = usize::from(bytes.byte() % 5);
    let column = |bytes: &mut Bytes, n: usize| (0..n).map(|_| bytes.length()).collect::<Vec<_>>();
    let key_lens = column(&mut bytes, n);
    // Now and then a column one entry too long.
    let value_count = n + usize::from(bytes.peek() == 0xff);
    let value_lens = column(&mut bytes, value_count);
    let topic_lens = column(&mut bytes, n);
    let timestamps = (0..n).map(|_| i64::from(bytes.length())).collect();
    let header_counts: Vec<u32> = (0..n).map(|_| u32::from(bytes.byte() % 3)).collect();
    let headers: u32 = header_counts.iter().sum();
    let header_lens = (0..2 * headers + u32::from(bytes.peek() == 0xfe))
        .map(|_| u32::from(bytes.byte() % 8))
        .collect();
    let write_count = usize::from(bytes.byte() % 4);
    let write_keys: Vec<u32> = (0..write_count)
        .map(|_| u32::from(bytes.byte() % 5))
        .collect();
    let write_values: Vec<i32> = (0..write_count).map(|_| bytes.length()).collect();
    let rest = bytes.0.to_vec();

    let batch = OutputBatch {
        key_lens,
        value_lens,
        topic_lens,
        timestamps,
        header_counts,
        header_lens,
        data: rest.clone(),
    };
    if let Ok(outputs) = crate::engine::decode_output_batch(&batch) {
        let used: usize = outputs
            .iter()
            .map(|o| {
                let len = |b: &Option<Vec<u8>>| b.as_ref().map_or(0, Vec::len);
                let headers: usize = o.headers.iter().map(|h| h.key.len() + h.value.len()).sum();
                len(&o.key) + len(&o.value) + o.topic.as_ref().map_or(0, String::len) + headers
            })
            .sum();
        assert_eq!(used, batch.data.len(), "decoded outputs leave bytes unused");
    }
    let writes = Writes {
        key_lens: write_keys,
        value_lens: write_values,
        data: rest,
    };
    if let Ok(parsed) = crate::engine::decode_state_writes(&writes) {
        let used: usize = parsed
            .iter()
            .map(|(k, v)| k.len() + v.map_or(0, <[u8]>::len))
            .sum();
        assert_eq!(used, writes.data.len(), "decoded writes leave bytes unused");
    }
}

/// Reads fuzz input as small numbers; zeros once it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let (&first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        first
    }

    fn peek(&self) -> u8 {
        self.0.first().copied().unwrap_or(0)
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }

    /// A length as the layouts carry them: mostly small, sometimes -1 (absent) or
    /// another negative number.
    fn length(&mut self) -> i32 {
        i32::from(self.byte() as i8 % 12)
    }

    fn offset(&mut self) -> Option<i64> {
        match self.byte() % 9 {
            8 => None,
            n => Some(i64::from(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every input kept in `fuzz/corpus/<target>` runs through `target` (the fuzz
    /// targets' findings and seeds), without a nightly toolchain.
    fn replay(target: &str, run: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", dir.display()));
        let mut count = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{} fails {target}", path.display());
            count += 1;
        }
        assert!(count > 0, "the corpus {} is empty", dir.display());
    }

    #[test]
    fn the_jsonl_corpus_passes() {
        replay("jsonl", super::jsonl);
    }

    #[test]
    fn the_config_corpus_passes() {
        replay("config", super::config);
    }

    #[test]
    fn the_changelog_corpus_passes() {
        replay("changelog", super::changelog);
    }

    #[test]
    fn the_batch_layout_corpus_passes() {
        replay("batch_layout", super::batch_layout);
    }
}
