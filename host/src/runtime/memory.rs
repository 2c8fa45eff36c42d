//! A plugin's linear memory, mapped by the host so the kernel may back it with transparent huge
//! pages. A fleet's loaded hosts are tens of megabytes of linear memory, read once per batch call
//! in an order no prefetcher guesses; on 4 KiB pages most of those reads also miss the TLB
//! (`cargo bench --bench fleet` in pairs: the batch call 2-4% faster with huge pages, the
//! README has the runs). `NUMAFIT_HUGE_PAGES=off` keeps wasmtime's own mapping, for a machine
//! where the kernel's compaction for huge pages stalls more than the misses cost.
//!
//! The mapping is what wasmtime's own is: the whole reservation and its guard mapped inaccessible
//! up front, the memory's current size read-write and nothing past it, so the compiled code's
//! elided bounds checks stay sound (an access past the size faults, and wasmtime makes that fault
//! the guest's trap). The reservation only starts on a 2 MiB boundary, and asks for huge pages.

use std::ptr::NonNull;

use wasmtime::{LinearMemory, MemoryCreator, MemoryType};

/// Whether the operator left huge pages on (`NUMAFIT_HUGE_PAGES=off` turns them off; unset is on).
pub(super) fn wanted() -> Result<bool, String> {
    match std::env::var("NUMAFIT_HUGE_PAGES") {
        Err(std::env::VarError::NotPresent) => Ok(true),
        Ok(v) if matches!(v.as_str(), "on" | "1" | "true" | "yes") => Ok(true),
        Ok(v) if matches!(v.as_str(), "off" | "0" | "false" | "no") => Ok(false),
        Ok(v) => Err(format!("NUMAFIT_HUGE_PAGES={v:?}: expected on or off")),
        Err(e) => Err(format!("NUMAFIT_HUGE_PAGES: {e}")),
    }
}

/// Makes every linear memory of the engine's instances.
pub(super) struct HugePageMemories;

/// A transparent huge page on x86-64 and arm64 (4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;

// SAFETY: each memory is a fresh private anonymous mapping (zero-filled, as wasmtime requires),
// owned by the `Mapping` wasmtime keeps; it is at least `reserved + guard` bytes and never moves,
// and only `[0, size)` is accessible (see `Mapping`).
unsafe impl MemoryCreator for HugePageMemories {
    fn new_memory(
        &self,
        _ty: MemoryType,
        minimum: usize,
        maximum: Option<usize>,
        reserved_size_in_bytes: Option<usize>,
        guard_size_in_bytes: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        // Without a reservation asked for, the memory's own maximum (wasmtime's limiter and the
        // plugin's memory cap stop growth before it); a memory that may grow without end gets the
        // 32-bit address space, as wasmtime's own would.
        let capacity = reserved_size_in_bytes.or(maximum).unwrap_or(4 << 30);
        Mapping::new(minimum, capacity, guard_size_in_bytes).map(|m| Box::new(m) as Box<dyn LinearMemory>)
    }
}

/// One linear memory: `reserved` bytes (the memory's most) and `guard` bytes after them, in a
/// mapping that starts `HUGE_PAGE` early at most so the memory itself starts on a huge page.
struct Mapping {
    /// Where the mapping starts (for `munmap`) and its length.
    mapping: NonNull<u8>,
    mapped: usize,
    /// The memory's first byte: `mapping` rounded up to `HUGE_PAGE`.
    base: NonNull<u8>,
    /// Bytes accessible now (the memory's size), and the most it may grow to without moving.
    size: usize,
    capacity: usize,
}

// SAFETY: the mapping is plain memory owned by this value; wasmtime synchronises its use.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(minimum: usize, capacity: usize, guard: usize) -> Result<Mapping, String> {
        if minimum > capacity {
            return Err(format!("a linear memory of {minimum} bytes does not fit its reservation of {capacity}"));
        }
        let mapped = capacity
            .checked_add(guard)
            .and_then(|n| n.checked_add(HUGE_PAGE))
            .ok_or_else(|| format!("a linear memory reservation of {capacity} + {guard} bytes overflows"))?;
        // SAFETY: a new anonymous mapping at an address the kernel picks; nothing else refers to it.
        let raw = unsafe {
            libc::mmap(std::ptr::null_mut(), mapped, libc::PROT_NONE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE, -1, 0)
        };
        if raw == libc::MAP_FAILED {
            return Err(format!("cannot reserve {mapped} bytes for a linear memory: {}", std::io::Error::last_os_error()));
        }
        let mapping = NonNull::new(raw.cast::<u8>()).ok_or("mmap gave a null mapping")?;
        let skip = (HUGE_PAGE - (raw as usize) % HUGE_PAGE) % HUGE_PAGE;
        // SAFETY: `skip < HUGE_PAGE`, inside the mapping.
        let base = unsafe { NonNull::new_unchecked(raw.cast::<u8>().add(skip)) };
        let mut memory = Mapping { mapping, mapped, base, size: 0, capacity };
        // Advice only: a kernel without transparent huge pages refuses it and the memory works
        // on base pages as before.
        // SAFETY: `[base, base + capacity)` lies inside the mapping.
        unsafe { libc::madvise(base.as_ptr().cast(), capacity, libc::MADV_HUGEPAGE) };
        memory.grow_to(minimum).map_err(|e| e.to_string())?;
        Ok(memory)
    }
}

// SAFETY: `as_ptr` is stable for the memory's life, `[0, byte_size)` is read-write and
// `[byte_size, capacity + guard)` inaccessible, as the compiled code's bounds checks assume.
unsafe impl LinearMemory for Mapping {
    fn byte_size(&self) -> usize {
        self.size
    }

    fn byte_capacity(&self) -> usize {
        self.capacity
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        if new_size > self.capacity {
            wasmtime::bail!("a linear memory cannot grow to {new_size} bytes past its reservation of {}", self.capacity);
        }
        if new_size <= self.size {
            return Ok(());
        }
        // Wasm pages are whole system pages, so `size` is page-aligned and so is the new part.
        // SAFETY: `[base + size, base + new_size)` lies inside the reservation, which this value owns.
        let done =
            unsafe { libc::mprotect(self.base.as_ptr().add(self.size).cast(), new_size - self.size, libc::PROT_READ | libc::PROT_WRITE) };
        if done != 0 {
            wasmtime::bail!("cannot grow a linear memory to {new_size} bytes: {}", std::io::Error::last_os_error());
        }
        self.size = new_size;
        Ok(())
    }

    fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping this value made; wasmtime drops a memory only once no code uses it.
        unsafe { libc::munmap(self.mapping.as_ptr().cast(), self.mapped) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_is_aligned_zeroed_and_grows_in_place() {
        let mut m = Mapping::new(64 << 10, 16 << 20, 64 << 10).expect("maps");
        assert_eq!(m.as_ptr() as usize % HUGE_PAGE, 0);
        assert_eq!((m.byte_size(), m.byte_capacity()), (64 << 10, 16 << 20));
        let base = m.as_ptr();
        m.grow_to(3 << 20).expect("grows");
        assert_eq!((m.as_ptr(), m.byte_size()), (base, 3 << 20));
        // SAFETY: `[0, 3 MiB)` is accessible now.
        let bytes = unsafe { std::slice::from_raw_parts_mut(m.as_ptr(), 3 << 20) };
        assert!(bytes.iter().all(|&b| b == 0));
        bytes[(3 << 20) - 1] = 7;
        assert!(m.grow_to((16 << 20) + (64 << 10)).is_err(), "past the reservation");
        assert_eq!(m.byte_size(), 3 << 20);
    }

    #[test]
    fn a_memory_larger_than_its_reservation_is_refused() {
        let e = Mapping::new(2 << 20, 1 << 20, 0).err().expect("refused");
        assert!(e.contains("does not fit"), "{e}");
    }
}
