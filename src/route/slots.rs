use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

const FIRST: usize = 8;
const SEGMENTS: usize = 14; // 8 × (2^14 − 1) ≈ 131 000 slots, more than the 16-bit index allows

/// An append-only vector that readers index without a lock: segments of doubling size that are
/// never moved once allocated. Pushes must be serialized by the caller.
pub(crate) struct Slots<T> {
    /// The first segment, inline: the common case (a handful of endpoints) chases no pointer.
    head: [OnceLock<T>; FIRST],
    segments: [OnceLock<Box<[OnceLock<T>]>>; SEGMENTS],
    len: AtomicUsize,
}

/// The largest number of slots (the router packs an index in 16 bits).
pub(crate) const MAX_SLOTS: usize = 1 << 16;

fn locate(i: usize) -> (usize, usize) {
    let n = i + FIRST;
    let seg = (usize::BITS - 1 - n.leading_zeros()) as usize - FIRST.trailing_zeros() as usize;
    (seg, n - (FIRST << seg))
}

impl<T> Slots<T> {
    pub(crate) fn new() -> Self {
        Slots {
            head: std::array::from_fn(|_| OnceLock::new()),
            segments: std::array::from_fn(|_| OnceLock::new()),
            len: AtomicUsize::new(0),
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        if i >= self.len() {
            return None;
        }
        self.get_pushed(i)
    }

    /// Like [`get`](Self::get) for an index known to come from a completed push (no length
    /// check).
    #[inline]
    pub(crate) fn get_pushed(&self, i: usize) -> Option<&T> {
        if i < FIRST {
            return self.head[i].get();
        }
        let (seg, off) = locate(i);
        self.segments[seg].get()?.get(off)?.get()
    }

    /// Appends `value` and returns its index; `None` when full. The caller serializes pushes.
    pub(crate) fn push(&self, value: T) -> Option<usize> {
        let i = self.len.load(Ordering::Relaxed);
        if i >= MAX_SLOTS {
            return None;
        }
        let cell = if i < FIRST {
            &self.head[i]
        } else {
            let (seg, off) = locate(i);
            let segment = self.segments[seg]
                .get_or_init(|| (0..(FIRST << seg)).map(|_| OnceLock::new()).collect());
            &segment[off]
        };
        if cell.set(value).is_err() {
            return None;
        }
        self.len.store(i + 1, Ordering::Release);
        Some(i)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &T)> + '_ {
        (0..self.len()).filter_map(move |i| self.get(i).map(|v| (i, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_walks_doubling_segments() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(7), (0, 7));
        assert_eq!(locate(8), (1, 0));
        assert_eq!(locate(23), (1, 15));
        assert_eq!(locate(24), (2, 0));
        let (seg, off) = locate(MAX_SLOTS - 1);
        assert!(seg < SEGMENTS);
        assert!(off < FIRST << seg);
    }

    #[test]
    fn push_and_get_keep_order_across_segments() {
        let s = Slots::new();
        for i in 0..100 {
            assert_eq!(s.push(i * 10), Some(i));
        }
        assert_eq!(s.len(), 100);
        assert_eq!(s.get(0), Some(&0));
        assert_eq!(s.get(57), Some(&570));
        assert_eq!(s.get(100), None);
        assert_eq!(s.iter().map(|(_, v)| *v).sum::<usize>(), 49_500);
    }
}
