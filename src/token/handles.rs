//! Object handles: process-local numbers mapped to (slot, backend object id), never reused
//! within a process. The same object found twice gets the same handle.

use crate::fastmap::FastMap;

use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};

use crate::backend::ObjectId;

/// Every operation resolves its key's handle: the table sits behind a lock with a lock word
/// per shard, so that threads resolving handles write no shared cache line; a new handle (an
/// object seen for the first time) takes every shard.
#[derive(Debug, Default)]
pub struct Handles {
    inner: ShardedLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    by_handle: FastMap<u64, (usize, ObjectId)>,
    by_object: FastMap<(usize, ObjectId), u64>,
}

impl Handles {
    /// The handle of `(slot, id)`, allocating one on first sight.
    pub fn handle_for(&self, slot: usize, id: ObjectId) -> u64 {
        if let Some(h) = self.read().by_object.get(&(slot, id)) {
            return *h;
        }
        let mut g = self.write();
        if let Some(h) = g.by_object.get(&(slot, id)) {
            return *h;
        }
        g.next += 1;
        let h = g.next;
        g.by_handle.insert(h, (slot, id));
        g.by_object.insert((slot, id), h);
        h
    }

    fn read(&self) -> ShardedLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    fn write(&self) -> ShardedLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn resolve(&self, handle: u64) -> Option<(usize, ObjectId)> {
        self.read().by_handle.get(&handle).copied()
    }

    /// Forgets a destroyed object's handle (the number is not given out again).
    pub fn forget(&self, handle: u64) {
        let mut g = self.write();
        if let Some(key) = g.by_handle.remove(&handle) {
            g.by_object.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_never_reused() {
        let h = Handles::default();
        let a = h.handle_for(0, [1; 16]);
        assert_eq!(h.handle_for(0, [1; 16]), a);
        h.forget(a);
        let b = h.handle_for(0, [1; 16]);
        assert_ne!(a, b);
        assert_eq!(h.resolve(a), None);
        assert_eq!(h.resolve(b), Some((0, [1; 16])));
    }
}
