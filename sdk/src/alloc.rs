//! The guest's global allocator: free lists of small blocks in front of the
//! standard allocator (dlmalloc on `wasm32-wasip2`).
//!
//! A transform allocates a few small, short-lived blocks per record (the record's
//! value, a key, an output) and frees them a batch later, over and over, in the same
//! few sizes. dlmalloc serves each one through its bins, and in Wasm that was a third
//! of a word count's guest time (BENCHMARKS.md). Here a freed block of up to
//! [`MAX_SMALL`] bytes goes onto a list of its size class instead, and the next
//! allocation of that class takes it back: a push and a pop. Rust's allocator API
//! hands `dealloc` the block's size, so the class needs no header. The byte-map and
//! JSON examples ran 8-15% faster in Wasm with it (BENCHMARKS.md, sixth session).
//!
//! Each list keeps at most [`LIST_BYTES`] of blocks; beyond that, frees go back to
//! dlmalloc, so memory a transform once filled with small objects and released is
//! returned for other uses, and the lists never hold more than about 1 MiB.
//!
//! Components are single-threaded (`wasm32-wasip2` has no threads), which is what
//! makes the unsynchronised lists sound; the allocator is only compiled for a target
//! without atomics. A transform that wants an allocator of its own turns this one off
//! with `default-features = false` on `weir-sdk`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Blocks up to this size are kept on free lists.
const MAX_SMALL: usize = 256;
/// Size classes are multiples of this, which is also the largest alignment served
/// from the lists (dlmalloc aligns every block to at least 8 bytes on wasm32).
const GRANULE: usize = 8;
const CLASSES: usize = MAX_SMALL / GRANULE;
/// Most bytes of free blocks one list keeps.
const LIST_BYTES: usize = 32 << 10;

/// One size class's free blocks, linked through their first word.
#[derive(Clone, Copy)]
struct FreeList {
    head: *mut u8,
    len: usize,
}

/// The allocator `weir-sdk` registers for components.
pub(crate) struct Allocator {
    lists: UnsafeCell<[FreeList; CLASSES]>,
}

// SAFETY: registered only on single-threaded targets (see the module doc), and the
// unit tests give each test an instance of its own: no two threads touch the lists.
unsafe impl Sync for Allocator {}

impl Allocator {
    pub(crate) const fn new() -> Self {
        Self {
            lists: UnsafeCell::new(
                [FreeList {
                    head: ptr::null_mut(),
                    len: 0,
                }; CLASSES],
            ),
        }
    }

    /// The size class of `layout`, when it is small enough for the lists. Every
    /// layout of a class is allocated from dlmalloc at the class's full size, so any
    /// block on a list fits any layout of its class.
    fn class(layout: Layout) -> Option<usize> {
        (layout.size() <= MAX_SMALL && layout.align() <= GRANULE)
            .then(|| layout.size().max(1).div_ceil(GRANULE) - 1)
    }

    fn class_layout(class: usize) -> Layout {
        // SAFETY: a non-zero multiple of the granule, aligned to the granule.
        unsafe { Layout::from_size_align_unchecked((class + 1) * GRANULE, GRANULE) }
    }

    /// # Safety
    /// Single-threaded use only, and no other reference to the lists may be live.
    #[allow(
        clippy::mut_from_ref,
        reason = "each caller holds one list at a time and lets it go before the next"
    )]
    unsafe fn list(&self, class: usize) -> &mut FreeList {
        // SAFETY: per this function's contract.
        unsafe { &mut (*self.lists.get())[class] }
    }
}

// SAFETY: blocks come from `System` at their class's size (or the layout's own, for
// large ones) and go back to a list or to `System` with the same size.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = Self::class(layout) else {
            // SAFETY: the caller's layout, as given.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: one call at a time.
        let list = unsafe { self.list(class) };
        if list.head.is_null() {
            // SAFETY: a valid layout of non-zero size.
            return unsafe { System.alloc(Self::class_layout(class)) };
        }
        let block = list.head;
        // SAFETY: a free block holds the next one's address in its first word.
        list.head = unsafe { block.cast::<*mut u8>().read() };
        list.len -= 1;
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = Self::class(layout) else {
            // SAFETY: allocated by `System` with this layout.
            return unsafe { System.dealloc(block, layout) };
        };
        let class_layout = Self::class_layout(class);
        // SAFETY: one call at a time.
        let list = unsafe { self.list(class) };
        if (list.len + 1) * class_layout.size() > LIST_BYTES {
            // SAFETY: blocks of this class come from `System` at the class's size.
            return unsafe { System.dealloc(block, class_layout) };
        }
        // SAFETY: the block is ours again and at least a word long and aligned.
        unsafe { block.cast::<*mut u8>().write(list.head) };
        list.head = block;
        list.len += 1;
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::class(layout).is_none() {
            // SAFETY: the caller's layout, as given; fresh memory may skip the zeroing.
            return unsafe { System.alloc_zeroed(layout) };
        }
        // SAFETY: as `alloc`; the block is at least `layout.size()` bytes.
        unsafe {
            let block = self.alloc(layout);
            if !block.is_null() {
                block.write_bytes(0, layout.size());
            }
            block
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` makes a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (Self::class(layout), Self::class(new_layout)) {
            // SAFETY: allocated by `System` with `layout`, and staying large.
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            // The block already has room for every size of its class.
            (Some(old), Some(new)) if old == new => block,
            // SAFETY: a new block, the bytes both hold, then the old block freed.
            _ => unsafe {
                let moved = self.alloc(new_layout);
                if !moved.is_null() {
                    ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                    self.dealloc(block, layout);
                }
                moved
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn classes_cover_each_size_once() {
        let class = |size, align| Allocator::class(layout(size, align));
        assert_eq!(class(0, 1), Some(0));
        assert_eq!(class(8, 8), Some(0));
        assert_eq!(class(9, 1), Some(1));
        assert_eq!(class(MAX_SMALL, 8), Some(CLASSES - 1));
        assert_eq!(class(MAX_SMALL + 1, 1), None);
        assert_eq!(class(16, 16), None, "over-aligned layouts go to System");
        for size in 0..=MAX_SMALL {
            let c = class(size, 1).unwrap();
            assert!(Allocator::class_layout(c).size() >= size);
        }
    }

    #[test]
    fn a_freed_block_serves_the_next_allocation_of_its_class() {
        let alloc = Allocator::new();
        unsafe {
            let a = alloc.alloc(layout(24, 8));
            alloc.dealloc(a, layout(24, 8));
            let b = alloc.alloc(layout(20, 4));
            assert_eq!(a, b, "24 and 20 bytes share a class");
            b.write_bytes(7, 20);
            alloc.dealloc(b, layout(20, 4));
            let zeroed = alloc.alloc_zeroed(layout(24, 8));
            assert_eq!(zeroed, a);
            assert!(
                std::slice::from_raw_parts(zeroed, 24)
                    .iter()
                    .all(|&b| b == 0)
            );
            alloc.dealloc(zeroed, layout(24, 8));
        }
    }

    #[test]
    fn each_list_keeps_at_most_its_budget() {
        let alloc = Allocator::new();
        let small = layout(24, 8);
        unsafe {
            let blocks: Vec<_> = (0..LIST_BYTES / 24 + 10)
                .map(|_| alloc.alloc(small))
                .collect();
            for &block in &blocks {
                alloc.dealloc(block, small);
            }
            let kept = alloc.list(Allocator::class(small).unwrap()).len;
            assert_eq!(kept, LIST_BYTES / 24);
        }
    }

    #[test]
    fn realloc_keeps_the_bytes_across_classes_and_sizes() {
        let alloc = Allocator::new();
        unsafe {
            let mut block = alloc.alloc(layout(10, 1));
            for i in 0..10 {
                block.add(i).write(i as u8);
            }
            // Same class, another class, large, large again, then small again.
            let mut size = 10;
            for new_size in [16, 100, 300, 4000, 50] {
                block = alloc.realloc(block, layout(size, 1), new_size);
                assert!(!block.is_null());
                let kept: Vec<u8> = std::slice::from_raw_parts(block, 10).to_vec();
                assert_eq!(
                    kept,
                    (0..10).collect::<Vec<u8>>(),
                    "after {size} -> {new_size}"
                );
                block.add(new_size - 1).write(0xff);
                size = new_size;
            }
            alloc.dealloc(block, layout(size, 1));
        }
    }
}
