//! Each thread's own copies of the objects it used last, so that an operation with a key writes
//! no memory another thread reads. Shared caches cost a write to a shared cache line per look-up
//! (a lock word, an `Arc`'s count) even when nothing changes; with two threads using one key
//! those lines move between cores on every operation, which held two threads to ~1.4x one
//! (issue 21). A thread keeps up to [`VIEW_MAX`] objects here, each with the [`Stamp`] of the
//! shared state it was copied at, and uses one only while the stamp is still current: every
//! change to the backend's objects (a write to its session objects, anything taken out of its
//! opened-object cache, a new store) and every commit to the store moves the stamp. The check
//! is a few loads of counters that change only when objects do.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::objects::Opened;
use super::store::Version;
use crate::backend::ObjectId;

/// How many objects a thread keeps copies of (the most recently copied ones).
const VIEW_MAX: usize = 8;

/// What an object's copy was made at: the generation of the session objects (a session
/// object's copy), or of the opened-object cache and the store's version (a token object's).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Stamp {
    Session(u64),
    Token(u64, Version),
}

/// A value behind a read-write lock whose writes are counted: a write guard adds one to the
/// generation when it is dropped, after the change and before the lock is released.
pub(super) struct Watched<T> {
    lock: RwLock<T>,
    generation: AtomicU64,
}

pub(super) struct WatchedWrite<'a, T> {
    guard: RwLockWriteGuard<'a, T>,
    generation: &'a AtomicU64,
}

impl<T> Watched<T> {
    pub fn new(value: T) -> Watched<T> {
        Watched {
            lock: RwLock::new(value),
            generation: AtomicU64::new(0),
        }
    }
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        self.lock.read()
    }
    pub fn write(&self) -> WatchedWrite<'_, T> {
        WatchedWrite {
            guard: self.lock.write(),
            generation: &self.generation,
        }
    }
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

impl<T> std::ops::Deref for WatchedWrite<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> std::ops::DerefMut for WatchedWrite<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for WatchedWrite<'_, T> {
    fn drop(&mut self) {
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// Numbers each backend, so that a thread's copies of one token's objects are never taken for
/// another's (a token finalised and initialised again is a new backend).
static NEXT_BACKEND: AtomicU64 = AtomicU64::new(1);

pub(super) fn new_backend_id() -> u64 {
    NEXT_BACKEND.fetch_add(1, Ordering::Relaxed)
}

struct Viewed {
    backend: u64,
    id: ObjectId,
    stamp: Stamp,
    opened: Arc<Opened>,
}

thread_local! {
    static VIEW: RefCell<Vec<Viewed>> = const { RefCell::new(Vec::new()) };
}

/// This thread's copy of object `id` of backend `backend`, with the stamp it was made at.
pub(super) fn get(backend: u64, id: &ObjectId) -> Option<(Stamp, Arc<Opened>)> {
    VIEW.with_borrow(|v| {
        v.iter()
            .find(|e| e.backend == backend && e.id == *id)
            .map(|e| (e.stamp, e.opened.clone()))
    })
}

/// Keeps a copy of `shared` (this thread's own) made at `stamp`, and returns it.
pub(super) fn put(backend: u64, stamp: Stamp, shared: &Opened) -> Arc<Opened> {
    let copy = Arc::new(shared.private_copy());
    VIEW.with_borrow_mut(|v| {
        v.retain(|e| !(e.backend == backend && e.id == copy.uid));
        if v.len() >= VIEW_MAX {
            v.remove(0);
        }
        v.push(Viewed {
            backend,
            id: copy.uid,
            stamp,
            opened: copy.clone(),
        });
    });
    copy
}
