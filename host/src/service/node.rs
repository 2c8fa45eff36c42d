//! The machine's truth as the service holds it: the base topology it discovered at start, the
//! ledger it writes claims to, and the usage derived from the ledger, kept until the ledger moves
//! (another process's claim included), so a dry-run fit does not re-derive every claim.

use std::path::Path;
use std::sync::{Arc, Mutex};

use numafit_plugin::{HostTopology, Placement};

use crate::contract::{self, wit};
use crate::ledger::{self, Claim, Derived, Ledger, LedgerError};
use crate::verify;

/// The usage at one moment of the ledger.
pub struct View {
    /// The ledger's generation these claims are at (moved by every claim and release).
    pub generation: i64,
    pub claims: Vec<Claim>,
    pub derived: Derived,
    /// `derived.host` as a plugin is shown it.
    pub shown: wit::Host,
    /// `shown`'s CPUs by cell, for checking every answer given on this view.
    pub index: verify::HostIndex,
}

pub struct Node {
    pub base: HostTopology,
    /// The limits claims are admitted under (the service's `--limits`).
    pub limits: Option<wit::Limits>,
    dir: std::path::PathBuf,
    /// Connections for claims and releases, one per concurrent request: claims serialize only on
    /// SQLite's write lock, inside the transaction, not on a connection.
    writers: Mutex<Vec<Ledger>>,
    reader: Mutex<Reader>,
}

/// A writer connection lent to one request.
pub struct Writer<'a> {
    node: &'a Node,
    ledger: Option<Ledger>,
}

impl std::ops::Deref for Writer<'_> {
    type Target = Ledger;
    fn deref(&self) -> &Ledger {
        self.ledger.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Writer<'_> {
    fn deref_mut(&mut self) -> &mut Ledger {
        self.ledger.as_mut().expect("present until dropped")
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        if let Some(l) = self.ledger.take() {
            self.node.writers.lock().unwrap_or_else(|p| p.into_inner()).push(l);
        }
    }
}

struct Reader {
    ledger: Ledger,
    view: Option<(i64, Arc<View>)>,
}

impl Node {
    pub fn open(base: HostTopology, dir: &Path, limits: Option<wit::Limits>) -> Result<Node, LedgerError> {
        // Two connections: the reader's `data_version` moves with every commit the writer (or any
        // other process) makes.
        let writer = Ledger::open(dir)?;
        let reader = Ledger::open(dir)?;
        Ok(Node {
            base,
            limits,
            dir: dir.to_path_buf(),
            writers: Mutex::new(vec![writer]),
            reader: Mutex::new(Reader { ledger: reader, view: None }),
        })
    }

    /// A writer connection: an idle one, or a new one.
    pub fn ledger(&self) -> Result<Writer<'_>, LedgerError> {
        let idle = self.writers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let ledger = match idle {
            Some(l) => l,
            None => Ledger::open(&self.dir)?,
        };
        Ok(Writer { node: self, ledger: Some(ledger) })
    }

    /// How a placement is admitted onto the derived host.
    pub fn admit(&self, host: &HostTopology, p: &Placement) -> Result<HostTopology, String> {
        verify::admit(host, p, self.limits.as_ref())
    }

    /// The usage now: the cached view while the ledger has not moved, else derived afresh.
    pub fn view(&self) -> Result<Arc<View>, LedgerError> {
        let mut reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let version = reader.ledger.data_version()?;
        if let Some((v, view)) = &reader.view {
            if *v == version {
                return Ok(view.clone());
            }
        }
        let (generation, claims) = reader.ledger.snapshot()?;
        let derived = ledger::derive(&self.base, &claims, &|h: &HostTopology, p: &Placement| self.admit(h, p));
        let shown = contract::host_view(&derived.host);
        let index = verify::HostIndex::of(&shown);
        let view = Arc::new(View { generation, claims, derived, shown, index });
        reader.view = Some((version, view.clone()));
        Ok(view)
    }

    pub fn ledger_path(&self) -> String {
        self.dir.join(ledger::DB_FILE).display().to_string()
    }
}
