//! Appending the short pieces rejection sentences are made of ("guest cell ", a number, " MiB").
//!
//! `String::push_str` copies with a length known only at run time, which compiles to a call of
//! `memcpy`; in wasm that is a `memory.copy`, a call out of the guest into the runtime and back,
//! costing more than the few bytes it copies. A refused host in a fleet's batch writes some 150
//! such pieces, so pieces of up to 32 bytes are copied here with at most four word loads and
//! stores (the two halves overlapping), and longer ones with `push_str`.

/// Appends `piece` to `out`.
#[inline]
pub(crate) fn push(out: &mut String, piece: &str) {
    let n = piece.len();
    if n > 32 {
        out.push_str(piece);
        return;
    }
    out.reserve(n);
    let src = piece.as_ptr();
    // SAFETY: `reserve` made room for `n` more bytes past the length, so every write below lands
    // in `[len, len + n)` and every read in `piece`'s `n` bytes (each span of 16, 8 or 4 is taken
    // only when `n` is at least that long); the bytes written are `piece`'s, a whole `str`, so
    // the string stays UTF-8 when its length grows by `n`.
    unsafe {
        let vec = out.as_mut_vec();
        let dst = vec.as_mut_ptr().add(vec.len());
        if n >= 16 {
            copy_16(src, dst);
            copy_16(src.add(n - 16), dst.add(n - 16));
        } else if n >= 8 {
            copy_8(src, dst);
            copy_8(src.add(n - 8), dst.add(n - 8));
        } else if n >= 4 {
            dst.cast::<u32>().write_unaligned(src.cast::<u32>().read_unaligned());
            dst.add(n - 4).cast::<u32>().write_unaligned(src.add(n - 4).cast::<u32>().read_unaligned());
        } else if n > 0 {
            *dst = *src;
            *dst.add(n / 2) = *src.add(n / 2);
            *dst.add(n - 1) = *src.add(n - 1);
        }
        vec.set_len(vec.len() + n);
    }
}

/// Copies 8 bytes, unaligned. Safety: both spans are valid for 8 bytes.
#[inline(always)]
unsafe fn copy_8(src: *const u8, dst: *mut u8) {
    // SAFETY: the caller's.
    unsafe { dst.cast::<u64>().write_unaligned(src.cast::<u64>().read_unaligned()) }
}

/// Copies 16 bytes, unaligned. Safety: both spans are valid for 16 bytes.
#[inline(always)]
unsafe fn copy_16(src: *const u8, dst: *mut u8) {
    // SAFETY: the caller's.
    unsafe {
        copy_8(src, dst);
        copy_8(src.add(8), dst.add(8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_up_to_past_the_word_copies_appends_exactly() {
        let source: String = "é0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ".into();
        for start in ["", "x", "guest cell 12 (4 dedicated vCPUs"] {
            for end in (0..=source.len()).filter(|&e| source.is_char_boundary(e)) {
                let piece = &source[..end];
                let mut out = String::from(start);
                out.shrink_to_fit();
                push(&mut out, piece);
                assert_eq!(out, format!("{start}{piece}"), "{end} bytes after {start:?}");
            }
        }
    }
}
