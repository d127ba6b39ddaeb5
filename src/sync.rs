//! Taking `std::sync` locks without poisoning getting in the way.
//!
//! A `Mutex` or `RwLock` is poisoned when a thread panics while holding it, and `lock()` then
//! fails for every later caller. The locks of this crate guard plain state (a list of
//! subscribers, a registry of endpoints, a cached connection, or nothing at all for a lock that
//! only orders transitions) that each critical section changes in single steps, each of which
//! leaves it valid: a panic inside one (a `tracing` subscriber's, say) cannot leave it half
//! updated. A poisoned lock therefore holds data as good as any, and refusing it would turn one
//! panic into a library that panics on every later call. These helpers recover the guard with
//! [`PoisonError::into_inner`](std::sync::PoisonError::into_inner) instead, so that choice is
//! made once for the crate. A lock whose critical section can break an invariant midway must
//! not use them.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `m`, recovering the guard if the mutex is poisoned (see the module docs for why).
#[inline]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes a read lock on `l`, recovering the guard if the lock is poisoned (see the module docs
/// for why).
#[inline]
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// Takes the write lock on `l`, recovering the guard if the lock is poisoned (see the module
/// docs for why).
#[inline]
pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Panics on another thread while holding a guard from `hold`, poisoning the lock.
    fn poison(hold: impl FnOnce() + Send) {
        std::thread::scope(|s| {
            let joined = s.spawn(hold).join();
            assert!(joined.is_err(), "the holder should have panicked");
        });
    }

    #[test]
    fn poisoned_mutex_still_locks_with_its_data() {
        let m = Mutex::new(vec![1]);
        poison(|| {
            let mut held = lock(&m);
            held.push(2);
            panic!("poisoning the mutex");
        });
        assert!(m.is_poisoned());
        assert_eq!(*lock(&m), [1, 2]);
        lock(&m).push(3);
        assert_eq!(*lock(&m), [1, 2, 3]);
    }

    #[test]
    fn poisoned_rwlock_still_reads_and_writes() {
        let l = RwLock::new(1);
        poison(|| {
            let mut held = write(&l);
            *held = 2;
            panic!("poisoning the lock");
        });
        assert!(l.is_poisoned());
        assert_eq!(*read(&l), 2);
        *write(&l) = 3;
        assert_eq!(*read(&l), 3);
    }
}
