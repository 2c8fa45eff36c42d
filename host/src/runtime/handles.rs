//! Loaded hosts and requests as the caller holds them: bound to the plugin that made them (by
//! a process-unique id), remembering the resource each instance holds, and freeing those when
//! dropped (at each instance's next call: a handle cannot reach a store when it is dropped).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use wasmtime::component::ResourceAny;

use super::wit;

/// Plugins and instances are numbered once per process, so no two ever share an id.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(super) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Which instances of a plugin are alive, and the resources of dropped handles waiting for their
/// instance's next call to free them (a handle cannot reach the store when it is dropped).
#[derive(Default)]
pub(super) struct HandleBook {
    book: Mutex<Book>,
    /// Whether `dropped` may hold anything: a call reads it without taking the lock (the common
    /// case of every fit is that no handle was dropped). Set under the lock.
    pending: AtomicBool,
}

#[derive(Default)]
pub(super) struct Book {
    pub(super) alive: HashSet<u64>,
    pub(super) dropped: Vec<(u64, ResourceAny)>,
}

impl HandleBook {
    pub(super) fn lock(&self) -> MutexGuard<'_, Book> {
        // A panic while holding the lock leaves the book consistent (every update is one push or
        // one removal), so a poisoned lock is used as it is.
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// False when no dropped handle waits (a drop racing with this read is freed a call later).
    pub(super) fn may_have_dropped(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Records, under `book`'s lock, whether dropped handles wait.
    pub(super) fn note_pending(&self, book: &Book) {
        self.pending.store(!book.dropped.is_empty(), Ordering::Release);
    }
}

/// The resources one loaded host or request has in the instances that loaded it, bound to the
/// plugin that made them. Dropping it frees them (at each instance's next call).
pub(super) struct Handles {
    pub(super) plugin: u64,
    pub(super) plugin_name: String,
    book: Arc<HandleBook>,
    per_instance: Mutex<Vec<(u64, ResourceAny)>>,
}

impl Handles {
    pub(super) fn new(plugin: u64, plugin_name: &str, book: Arc<HandleBook>) -> Handles {
        Handles { plugin, plugin_name: plugin_name.to_string(), book, per_instance: Mutex::new(Vec::new()) }
    }

    fn entries(&self) -> MutexGuard<'_, Vec<(u64, ResourceAny)>> {
        self.per_instance.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get(&self, instance: u64) -> Option<ResourceAny> {
        self.entries().iter().find(|(i, _)| *i == instance).map(|&(_, r)| r)
    }

    /// Records the resource in `instance`, forgetting those of instances that are gone.
    pub(super) fn put(&self, instance: u64, resource: ResourceAny) {
        let book = self.book.lock();
        let mut entries = self.entries();
        entries.retain(|(i, _)| book.alive.contains(i) && *i != instance);
        entries.push((instance, resource));
    }
}

impl Drop for Handles {
    fn drop(&mut self) {
        let mut book = self.book.lock();
        let entries = std::mem::take(&mut *self.entries());
        for (instance, resource) in entries {
            if book.alive.contains(&instance) {
                book.dropped.push((instance, resource));
            }
        }
        self.book.note_pending(&book);
    }
}

/// A host loaded into a plugin (`host-state`): fits against it cross only the request. The tables
/// are kept, so the host is loaded again transparently when the plugin instance was replaced after
/// a trap; for a 0.1 plugin they are what each fit sends.
pub struct LoadedHost {
    pub(super) host: wit::Host,
    pub(super) handles: Handles,
}

/// A request loaded into a plugin (`request-state`, contract 0.3). The request is kept, so it is
/// loaded again transparently when the plugin instance was replaced after a trap; for a plugin
/// without loaded requests it is what each fit sends.
pub struct LoadedRequest {
    pub(super) request: wit::Request,
    /// The core's model of the request (none when it does not convert: the plugin refuses it).
    pub(super) model: Option<Arc<crate::contract::RequestModel>>,
    pub(super) handles: Handles,
}

impl LoadedRequest {
    pub fn request(&self) -> &wit::Request {
        &self.request
    }
}

impl LoadedHost {
    pub fn host(&self) -> &wit::Host {
        &self.host
    }
}
