//! The component's allocator: a bump arena for what a call allocates and frees, and the system
//! allocator for what outlives calls (hosts loaded as `host-state`).
//!
//! A policy call allocates its arguments, works, returns, and the host's post-return call frees
//! what the answer used: at that point nothing in the arena is live, so the whole arena is
//! reusable. Bumping a pointer instead of running a general-purpose allocator makes a call several
//! times cheaper in wasm (dlmalloc costs about 100 ns an allocation there, and a conversion of a
//! 128-CPU host makes hundreds). Memory freed in the middle of a call is not reused before the
//! call ends, so a call's peak is what it allocates in total; the host's memory cap bounds that.
//!
//! The arena is one chunk taken from the system allocator. What does not fit while the chunk is in
//! use comes from the system allocator too, and the chunk is regrown to the call's peak once it is
//! empty again. Allocations made inside [`persistent`] always come from the system allocator, so a
//! loaded host never pins the arena. Frees go by address: inside the chunk is the arena's.
//!
//! Only compiled for wasm32, which is single-threaded: no locking.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use std::alloc::System;

/// Smallest and largest chunk, and the chunk's alignment (enough for every type the core
/// allocates). Calls that need more than the largest chunk get the rest from the system allocator.
const MIN_CHUNK: usize = 64 << 10;
const MAX_CHUNK: usize = 64 << 20;
const CHUNK_ALIGN: usize = 16;

struct State {
    /// The chunk `[start, end)` (both 0 until the first allocation).
    start: usize,
    end: usize,
    /// Next free byte of the chunk.
    next: usize,
    /// Arena allocations not yet freed.
    live: usize,
    /// Bytes that did not fit the chunk since it was last empty: the next chunk makes room for them.
    overflow: usize,
    /// Inside [`persistent`]: everything goes to the system allocator.
    persistent: bool,
}

pub struct Arena(UnsafeCell<State>);

// SAFETY: wasm32 guests run on one thread; nothing else can touch the state.
unsafe impl Sync for Arena {}

impl Arena {
    pub const fn new() -> Self {
        Arena(UnsafeCell::new(State { start: 0, end: 0, next: 0, live: 0, overflow: 0, persistent: false }))
    }

    #[allow(clippy::mut_from_ref)]
    fn state(&self) -> &mut State {
        // SAFETY: single-threaded (see `Sync`), and callers never hold two of these at once.
        unsafe { &mut *self.0.get() }
    }
}

impl Arena {
    /// Everything `alloc`'s fast path does not take: persistent allocations, the first chunk, a
    /// chunk that is full.
    #[cold]
    #[inline(never)]
    unsafe fn alloc_slow(&self, layout: Layout) -> *mut u8 {
        let s = self.state();
        if s.persistent {
            // SAFETY: the caller's layout, passed on.
            return unsafe { System.alloc(layout) };
        }
        if let Some(p) = s.bump(layout) {
            return p;
        }
        if s.live == 0 && s.regrow((s.end - s.start) + s.overflow + layout.size() + layout.align()) {
            if let Some(p) = s.bump(layout) {
                return p;
            }
        }
        s.overflow += layout.size();
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }
}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `f` with every allocation (and the allocations of what it returns) made by the system
/// allocator: for data that must outlive the current call.
pub fn persistent<T>(f: impl FnOnce() -> T) -> T {
    let was = crate::ALLOCATOR.state().persistent;
    crate::ALLOCATOR.state().persistent = true;
    let out = f();
    crate::ALLOCATOR.state().persistent = was;
    out
}

impl State {
    fn owns(&self, ptr: *mut u8) -> bool {
        // One comparison: below `start` wraps around to a large offset.
        (ptr as usize).wrapping_sub(self.start) < self.end - self.start
    }

    /// The last arena allocation of a call was freed (once a call): the whole chunk is free again.
    fn emptied(&mut self) {
        self.next = self.start;
        if self.overflow > 0 {
            // The call outgrew the chunk: make the next one big enough (if memory allows).
            let want = (self.end - self.start) + self.overflow;
            self.regrow(want);
        }
    }

    /// Replaces the (empty) chunk by one of at least `want` bytes. False when memory is exhausted.
    fn regrow(&mut self, want: usize) -> bool {
        let size = want.clamp(MIN_CHUNK, MAX_CHUNK).next_power_of_two();
        if size == self.end - self.start {
            // Already as big as it may get: keep it.
            self.next = self.start;
            self.overflow = 0;
            return true;
        }
        let Ok(layout) = Layout::from_size_align(size, CHUNK_ALIGN) else { return false };
        // SAFETY: a non-zero size with a valid alignment.
        let new = unsafe { System.alloc(layout) };
        if new.is_null() {
            return false;
        }
        self.release_chunk();
        self.start = new as usize;
        self.next = self.start;
        self.end = self.start + size;
        self.overflow = 0;
        true
    }

    fn release_chunk(&mut self) {
        if self.start != 0 {
            // SAFETY: the chunk was allocated by `regrow` with exactly this layout.
            unsafe { System.dealloc(self.start as *mut u8, Layout::from_size_align_unchecked(self.end - self.start, CHUNK_ALIGN)) };
        }
    }

    /// Bumps `layout` out of the chunk, if it fits.
    fn bump(&mut self, layout: Layout) -> Option<*mut u8> {
        if self.start == 0 || layout.align() > CHUNK_ALIGN {
            return None;
        }
        // Alignments are powers of two: a mask, not a division (which costs tens of cycles a
        // call, and every allocation of a fit passes here).
        let at = self.next.checked_add(layout.align() - 1)? & !(layout.align() - 1);
        if at.checked_add(layout.size())? > self.end {
            return None;
        }
        self.next = at + layout.size();
        self.live += 1;
        Some(at as *mut u8)
    }
}

unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let s = self.state();
        // Fast path, in as few branches as it takes (every branch also costs fuel): a bump inside
        // the chunk. Alignments are powers of two, and the chunk's addresses are absolute.
        if !s.persistent && s.start != 0 {
            let at = s.next.wrapping_add(layout.align() - 1) & !(layout.align() - 1);
            let end = at.wrapping_add(layout.size());
            if s.next <= at && at <= end && end <= s.end {
                s.next = end;
                s.live += 1;
                return at as *mut u8;
            }
        }
        // SAFETY: the caller's layout, passed on.
        unsafe { self.alloc_slow(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let s = self.state();
        if !s.owns(ptr) {
            // SAFETY: not the chunk's, so the system allocator made it with this layout.
            return unsafe { System.dealloc(ptr, layout) };
        }
        s.live = s.live.saturating_sub(1);
        if s.live == 0 {
            s.emptied();
        } else if ptr as usize + layout.size() == s.next {
            // The most recent allocation: give its bytes back at once.
            s.next = ptr as usize;
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let s = self.state();
        if s.owns(ptr) {
            // The most recent arena allocation grows or shrinks in place when it fits.
            if ptr as usize + layout.size() == s.next && ptr as usize + new_size <= s.end {
                s.next = ptr as usize + new_size;
                return ptr;
            }
            // Any other shrinks in place, its tail unused until the call ends: the bindings
            // shrink every list they return to its length, and a copy of a batch's answers
            // costs as much as writing them did.
            if new_size <= layout.size() {
                return ptr;
            }
        } else if new_size <= layout.size() {
            // The system allocator's own shrinks in place.
            // SAFETY: not the chunk's, so the system allocator made it with this layout.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the layout is valid (same alignment, size checked by the caller's contract).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: delegating to this allocator's own alloc/dealloc.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the copied length and do not overlap.
            unsafe { core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}
