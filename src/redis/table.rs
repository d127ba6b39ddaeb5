//! An append-only table that readers index without a lock or a reference count: segments of
//! doubling size, never moved once allocated. The pool's nodes live in one, so a command finds
//! its node with two plain loads.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Slots in the first segment; segment `k` has `FIRST << k`.
const FIRST: usize = 8;
/// 8 × (2^14 − 1) ≈ 131 000 slots: more than a router holds (65 536 endpoints).
const SEGMENTS: usize = 14;

pub(crate) struct Table<T> {
    segments: [OnceLock<Box<[OnceLock<T>]>>; SEGMENTS],
    len: AtomicUsize,
}

/// The segment and the offset in it of slot `i`.
fn locate(i: usize) -> (usize, usize) {
    let n = i + FIRST;
    let seg = (usize::BITS - 1 - n.leading_zeros()) as usize - FIRST.trailing_zeros() as usize;
    (seg, n - (FIRST << seg))
}

impl<T> Table<T> {
    pub(crate) fn new() -> Self {
        Table {
            segments: std::array::from_fn(|_| OnceLock::new()),
            len: AtomicUsize::new(0),
        }
    }

    /// Slot `i`, if it was pushed.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        if i >= self.len.load(Ordering::Acquire) {
            return None;
        }
        let (seg, off) = locate(i);
        self.segments[seg].get()?.get(off)?.get()
    }

    /// Appends `value`; returns its index, or `None` when the table is full. Callers serialize
    /// their pushes.
    pub(crate) fn push(&self, value: T) -> Option<usize> {
        let i = self.len.load(Ordering::Relaxed);
        let (seg, off) = locate(i);
        let segment = self
            .segments
            .get(seg)?
            .get_or_init(|| (0..(FIRST << seg)).map(|_| OnceLock::new()).collect());
        segment.get(off)?.set(value).ok()?;
        self.len.store(i + 1, Ordering::Release);
        Some(i)
    }

    /// Every slot pushed so far, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        (0..self.len.load(Ordering::Acquire)).filter_map(|i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_keep_their_index_across_segments() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(7), (0, 7));
        assert_eq!(locate(8), (1, 0));
        assert_eq!(locate(23), (1, 15));
        assert_eq!(locate(24), (2, 0));
        let t = Table::new();
        for i in 0..100 {
            assert_eq!(t.push(i * 10), Some(i));
        }
        assert_eq!(t.get(0), Some(&0));
        assert_eq!(t.get(57), Some(&570));
        assert_eq!(t.get(100), None);
        assert_eq!(t.iter().count(), 100);
        assert!(t.iter().copied().eq((0..100).map(|i| i * 10)));
    }

    #[test]
    fn a_full_table_refuses_instead_of_panicking() {
        let t = Table::new();
        let capacity = FIRST * ((1 << SEGMENTS) - 1);
        t.len.store(capacity, Ordering::Relaxed);
        assert_eq!(t.push(1u8), None);
    }
}
