"""Where the filter's policy comes from, and swapping it when its file changes.

The policy is ``[numafit] policy_path`` in nova.conf, else the environment variable
``NUMAFIT_POLICY``, else numafit's embedded ``nova`` policy. A file is watched: at most once per
scheduling request the filter asks ``maybe_swap()``, which costs one ``os.stat`` while nothing
changed. When the file's size, time or inode moved, a thread reads it; if its content differs
from the policy in use, the thread loads it, checks the contract (``info()``), runs the
self-test every policy must pass, and only then swaps. On any failure it logs why and the old
policy stays. Scheduling never waits for any of it.
"""

import hashlib
import os
import threading
import time

import numafit
from oslo_config import cfg
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

opts = [
    cfg.StrOpt(
        "policy_path",
        help="A numafit policy component (.wasm) for NUMAFitFilter. Unset: the environment "
        "variable NUMAFIT_POLICY, else numafit's embedded nova policy. The file is watched "
        "and swapped in, after a self-test, when its content changes.",
    ),
    cfg.IntOpt("fuel", min=1, help="Fuel (about one wasm instruction a unit) one policy call may burn; "
               "a filter pass is one call. Unset: numafit's default (5,000,000,000)."),
    cfg.IntOpt("deadline_ms", min=1, help="Wall-clock milliseconds one policy call may take. Unset: "
               "numafit's default (10,000)."),
    cfg.IntOpt("memory_mb", min=1, help="Memory the policy may use, MiB. Unset: numafit's default (256)."),
]

CONF = cfg.CONF
CONF.register_opts(opts, group="numafit")


class PolicyUnavailable(Exception):
    """The configured policy cannot be loaded when the filter starts."""


def configured_source(conf=CONF):
    """``(path, where)``: the policy file and where its name came from; ``(None, why)`` for the
    embedded policy."""
    path = conf.numafit.policy_path
    if path:
        return path, "[numafit] policy_path in nova.conf"
    path = os.environ.get("NUMAFIT_POLICY")
    if path:
        return path, "the environment variable NUMAFIT_POLICY"
    return None, "numafit's embedded nova policy (neither [numafit] policy_path nor NUMAFIT_POLICY is set)"


def identity(st):
    """What changes when a file is replaced or rewritten."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def limits(conf=CONF):
    """The policy's limits from nova.conf, as ``numafit.Policy`` takes them."""
    return {"fuel": conf.numafit.fuel, "deadline_ms": conf.numafit.deadline_ms, "memory_mb": conf.numafit.memory_mb}


def _off_the_hub(work, *args):
    """Runs ``work`` where it cannot stall the scheduler: under eventlet (nova-scheduler's
    default concurrency mode) a thread is a green thread, and compiling a component or running
    its self-test, which never yields, would stop every other one; eventlet's pool of real
    threads runs it instead. Under native threads it runs in the calling thread."""
    try:
        from eventlet import patcher, tpool
    except ImportError:
        return work(*args)
    if patcher.is_monkey_patched("thread"):
        return tpool.execute(work, *args)
    return work(*args)


def load_checked(content, path, conf=CONF):
    """A policy from ``content`` that reports a contract and passes the self-test, or raises."""
    policy = numafit.Policy(wasm=content, name=path, **limits(conf))
    info = policy.info()
    policy.self_test()
    return policy, info


class WatchedPolicy:
    """The policy in use, and its file watched for a new version."""

    def __init__(self, conf=CONF):
        self.conf = conf
        self.path, self.where = configured_source(conf)
        self._lock = threading.Lock()
        self._swapping = None
        self.swaps = 0
        self.last_refusal = None
        if self.path is None:
            self.policy = numafit.Policy(**limits(conf))
            self.info = self.policy.info()
            self.digest = None
            self._seen = None
        else:
            try:
                st = os.stat(self.path)
                with open(self.path, "rb") as f:
                    content = f.read()
                self.policy, self.info = load_checked(content, self.path, conf)
            except (OSError, numafit.Error) as e:
                raise PolicyUnavailable(f"numafit: cannot use the policy {self.path!r} (from {self.where}): {e}") from e
            self.digest = hashlib.sha256(content).hexdigest()
            self._seen = identity(st)
            # A refused version is not tried again until the file changes once more.
            self._refused_digest = None
        LOG.info("numafit: policy %(name)s %(version)s (contract %(contract)s) from %(where)s",
                 {**self.info, "where": self.where})

    def maybe_swap(self):
        """Starts a swap in the background when the watched file changed; never blocks."""
        if self.path is None or self._swapping is not None:
            return
        try:
            seen = identity(os.stat(self.path))
        except OSError as e:
            seen = ("missing", str(e))
        if seen == self._seen:
            return
        with self._lock:
            if self._swapping is not None or seen == self._seen:
                return
            # The thread is started before the file's identity is set, so whoever sees the
            # identity can wait on it.
            self._swapping = threading.Thread(target=self._swap, name="numafit-policy-swap", daemon=True)
            self._swapping.start()
            self._seen = seen

    def wait_for_swap(self, timeout=None):
        """Waits for a swap in progress (for tests and tools); True when none is left running."""
        t = self._swapping
        if t is not None:
            while t.ident is None:  # assigned, about to start
                time.sleep(0.001)
            t.join(timeout)
        return self._swapping is None

    def _swap(self):
        try:
            try:
                with open(self.path, "rb") as f:
                    content = f.read()
            except OSError as e:
                self._refuse(None, f"cannot read it: {e}")
                return
            digest = hashlib.sha256(content).hexdigest()
            if digest in (self.digest, self._refused_digest):
                return
            try:
                policy, info = _off_the_hub(load_checked, content, self.path, self.conf)
            except numafit.Error as e:
                self._refuse(digest, f"{type(e).__name__}: {e}")
                return
            old = self.info
            self.policy, self.info, self.digest = policy, info, digest
            self.swaps += 1
            LOG.info("numafit: swapped policy %(old)s %(old_version)s for %(name)s %(version)s "
                     "(contract %(contract)s) from %(path)s",
                     {"old": old["name"], "old_version": old["version"], "path": self.path, **info})
        except Exception as e:  # a swap thread never takes the scheduler down
            self._refuse(None, f"unexpected {type(e).__name__}: {e}")
        finally:
            self._swapping = None

    def _refuse(self, digest, why):
        self._refused_digest = digest
        self.last_refusal = why
        LOG.error("numafit: keeping policy %(name)s %(version)s; the new %(path)s is refused: %(why)s",
                  {**self.info, "path": self.path, "why": why})
