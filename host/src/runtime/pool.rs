//! Workers of one plugin lent to threads: each worker has its own instance, so threads never
//! wait on one another's calls; a returned worker keeps its instance for the next borrower.

use std::sync::Mutex;

use super::Plugin;

/// Workers of one plugin lent to threads: `take` hands out an idle worker (or a new one) and
/// the guard gives it back when dropped, so instances are reused across requests.
pub struct PluginPool {
    plugin: Plugin,
    idle: Mutex<Vec<Plugin>>,
}

impl PluginPool {
    pub fn new(plugin: Plugin) -> PluginPool {
        PluginPool { plugin, idle: Mutex::new(Vec::new()) }
    }

    /// The plugin whose workers the pool lends (to load hosts and requests with, say).
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    pub fn take(&self) -> PooledPlugin<'_> {
        let worker = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop().unwrap_or_else(|| self.plugin.worker());
        PooledPlugin { pool: self, worker }
    }
}

/// A worker borrowed from a `PluginPool`.
pub struct PooledPlugin<'a> {
    pool: &'a PluginPool,
    worker: Plugin,
}

impl std::ops::Deref for PooledPlugin<'_> {
    type Target = Plugin;
    fn deref(&self) -> &Plugin {
        &self.worker
    }
}

impl std::ops::DerefMut for PooledPlugin<'_> {
    fn deref_mut(&mut self) -> &mut Plugin {
        &mut self.worker
    }
}

impl Drop for PooledPlugin<'_> {
    fn drop(&mut self) {
        // The placeholder is an instance-less worker: an Arc clone.
        let worker = std::mem::replace(&mut self.worker, self.pool.plugin.worker());
        // A worker whose instance trapped has none left: it makes a fresh one on its next call.
        self.pool.idle.lock().unwrap_or_else(|p| p.into_inner()).push(worker);
    }
}
