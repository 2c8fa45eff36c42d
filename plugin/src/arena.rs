//! The component's allocator: a bump arena that starts over whenever nothing is allocated.
//!
//! A policy call allocates its arguments, works, returns, and the host's post-return call frees
//! what the answer used: at that point nothing is live, so the whole arena is reusable. Bumping a
//! pointer instead of running a general-purpose allocator makes a call several times cheaper in
//! wasm (dlmalloc costs about 100 ns an allocation there, and a conversion of a 128-CPU host makes
//! hundreds). Memory freed in the middle of a call is not reused before the call ends, so a call's
//! peak is what it allocates in total; the host's memory cap bounds that.
//!
//! Only compiled for wasm32, which is single-threaded: no locking.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;

const PAGE: usize = 65536;

struct State {
    /// First byte of the arena (0 until the first allocation).
    start: usize,
    /// Next free byte.
    next: usize,
    /// One past the last byte the arena owns.
    end: usize,
    /// Allocations not yet freed.
    live: usize,
}

pub struct Arena(UnsafeCell<State>);

// SAFETY: wasm32 guests run on one thread; nothing else can touch the state.
unsafe impl Sync for Arena {}

impl Arena {
    pub const fn new() -> Self {
        Arena(UnsafeCell::new(State { start: 0, next: 0, end: 0, live: 0 }))
    }
}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

/// Grows linear memory so that `[.., need)` is owned, keeping the arena contiguous.
fn grow(s: &mut State, need: usize) -> bool {
    let pages = need.saturating_sub(s.end).div_ceil(PAGE).max(1);
    let old = core::arch::wasm32::memory_grow(0, pages);
    if old == usize::MAX {
        return false;
    }
    let base = old * PAGE;
    if base != s.end {
        // First growth (or memory grown by someone else): the arena starts in the new pages.
        s.start = base;
        s.next = base;
    }
    s.end = base + pages * PAGE;
    true
}

unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single-threaded (see `Sync`), and no reference to the state outlives this call.
        let s = unsafe { &mut *self.0.get() };
        let (size, align) = (layout.size(), layout.align());
        let mut at = s.next.next_multiple_of(align);
        if s.end == 0 || at + size > s.end {
            if !grow(s, at + size) {
                return core::ptr::null_mut();
            }
            at = s.next.next_multiple_of(align);
            if at + size > s.end && !grow(s, at + size) {
                return core::ptr::null_mut();
            }
        }
        s.next = at + size;
        s.live += 1;
        at as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in `alloc`.
        let s = unsafe { &mut *self.0.get() };
        s.live = s.live.saturating_sub(1);
        if s.live == 0 {
            s.next = s.start;
        } else if ptr as usize + layout.size() == s.next {
            // The most recent allocation: give its bytes back at once.
            s.next = ptr as usize;
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let s = unsafe { &mut *self.0.get() };
        // The most recent allocation grows or shrinks in place when it fits.
        if ptr as usize + layout.size() == s.next && ptr as usize + new_size <= s.end {
            s.next = ptr as usize + new_size;
            return ptr;
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
