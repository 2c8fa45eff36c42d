//! A set of CPU numbers as a bitmap: the set algebra of pinning (free = pinnable − pinned) is
//! word-wide instead of element-wise, and iteration is always in ascending CPU order. The first
//! 512 CPU numbers live inline, so sets of ordinary hosts never touch the allocator.

use smallvec::SmallVec;

type Words = SmallVec<[u64; 8]>;

/// A set of host or guest CPU numbers.
///
/// Invariant: no trailing zero words, so the derived equality and hash are set equality.
#[derive(Default, PartialEq, Eq, Hash)]
pub struct CpuSet {
    words: Words,
}

impl Clone for CpuSet {
    fn clone(&self) -> Self {
        // A copy of the words (SmallVec's own `clone` pushes them one by one); an empty set, as a
        // dedicated guest's shared set is, copies nothing.
        if self.words.is_empty() {
            return CpuSet::new();
        }
        CpuSet { words: Words::from_slice(&self.words) }
    }
}

/// The CPUs of a set, ascending.
pub struct Cpus<'a> {
    words: &'a [u64],
    /// Index of the word `rest` came from.
    at: usize,
    /// Bits of the current word not yielded yet.
    rest: u64,
}

impl Iterator for Cpus<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        while self.rest == 0 {
            self.at += 1;
            self.rest = *self.words.get(self.at)?;
        }
        let bit = self.rest.trailing_zeros();
        self.rest &= self.rest - 1;
        Some(self.at as u32 * 64 + bit)
    }
}

impl CpuSet {
    pub fn new() -> Self {
        CpuSet { words: Words::new() }
    }

    pub fn insert(&mut self, cpu: u32) -> bool {
        let (w, b) = ((cpu / 64) as usize, cpu % 64);
        while w >= self.words.len() {
            self.words.push(0);
        }
        let was = self.words[w] & (1 << b) != 0;
        self.words[w] |= 1 << b;
        !was
    }

    pub fn remove(&mut self, cpu: u32) -> bool {
        let (w, b) = ((cpu / 64) as usize, cpu % 64);
        match self.words.get_mut(w) {
            Some(word) if *word & (1 << b) != 0 => {
                *word &= !(1 << b);
                self.trim();
                true
            }
            _ => false,
        }
    }

    pub fn contains(&self, cpu: u32) -> bool {
        let (w, b) = ((cpu / 64) as usize, cpu % 64);
        self.words.get(w).is_some_and(|word| word & (1 << b) != 0)
    }

    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    pub fn iter(&self) -> Cpus<'_> {
        Cpus { words: &self.words, at: 0, rest: self.words.first().copied().unwrap_or(0) }
    }

    /// The bitmap, 64 CPUs a word from CPU 0 (no trailing zero words).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    pub fn first(&self) -> Option<u32> {
        self.iter().next()
    }

    pub fn to_vec(&self) -> Vec<u32> {
        self.iter().collect()
    }

    fn trim(&mut self) {
        while self.words.last() == Some(&0) {
            self.words.pop();
        }
    }

    fn zip_words(&self, other: &CpuSet, op: impl Fn(u64, u64) -> u64) -> CpuSet {
        let n = self.words.len().max(other.words.len());
        let mut words = Words::from_elem(0, n);
        for (i, w) in words.iter_mut().enumerate() {
            *w = op(self.words.get(i).copied().unwrap_or(0), other.words.get(i).copied().unwrap_or(0));
        }
        let mut set = CpuSet { words };
        set.trim();
        set
    }

    pub fn union(&self, other: &CpuSet) -> CpuSet {
        self.zip_words(other, |a, b| a | b)
    }

    pub fn intersection(&self, other: &CpuSet) -> CpuSet {
        self.zip_words(other, |a, b| a & b)
    }

    pub fn difference(&self, other: &CpuSet) -> CpuSet {
        self.zip_words(other, |a, b| a & !b)
    }

    pub fn is_subset(&self, other: &CpuSet) -> bool {
        self.words.iter().enumerate().all(|(i, &w)| w & !other.words.get(i).copied().unwrap_or(0) == 0)
    }

    /// `self ∪= other`, in place.
    pub fn union_with(&mut self, other: &CpuSet) {
        if other.words.len() > self.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    /// Number of CPUs in `self ∩ other`, without building it.
    pub fn intersection_len(&self, other: &CpuSet) -> usize {
        self.words.iter().zip(&other.words).map(|(a, b)| (a & b).count_ones() as usize).sum()
    }

    /// Number of CPUs in `self ∖ other`, without building it.
    pub fn difference_len(&self, other: &CpuSet) -> usize {
        self.words.iter().enumerate().map(|(i, &w)| (w & !other.words.get(i).copied().unwrap_or(0)).count_ones() as usize).sum()
    }

    pub fn intersects(&self, other: &CpuSet) -> bool {
        self.words.iter().zip(&other.words).any(|(a, b)| a & b != 0)
    }

    pub fn extend(&mut self, cpus: impl IntoIterator<Item = u32>) {
        for cpu in cpus {
            self.insert(cpu);
        }
    }
}

impl FromIterator<u32> for CpuSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        // Bits gathered in a word array on the stack first: no growth step per CPU.
        let mut inline = [0u64; 8];
        let mut used = 0usize;
        let mut set = CpuSet::new();
        for cpu in iter {
            let w = (cpu / 64) as usize;
            if w < inline.len() {
                inline[w] |= 1 << (cpu % 64);
                used = used.max(w + 1);
            } else {
                set.insert(cpu);
            }
        }
        let words = set.words.len().max(used);
        let mut merged = Words::from_elem(0, words);
        for (i, word) in merged.iter_mut().enumerate() {
            *word = inline.get(i).copied().unwrap_or(0) | set.words.get(i).copied().unwrap_or(0);
        }
        let mut out = CpuSet { words: merged };
        out.trim();
        out
    }
}

impl<const N: usize> From<[u32; N]> for CpuSet {
    fn from(cpus: [u32; N]) -> Self {
        cpus.into_iter().collect()
    }
}

impl std::fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// `{0-3,8}`-style text for people (the kernel's list syntax).
impl CpuSet {
    /// The set as ranges, `{0-3,8,10-11}`, handed to `put` piece by piece (numbers through `itoa`,
    /// not `write!`: rejections print the pinned CPUs of many cells).
    fn write_ranges(&self, mut put: impl FnMut(&str)) {
        put("{");
        let mut first = true;
        let mut flush = |put: &mut dyn FnMut(&str), (lo, hi): (u32, u32)| {
            put(if std::mem::take(&mut first) { "" } else { "," });
            put(itoa::Buffer::new().format(lo));
            if hi > lo {
                put("-");
                put(itoa::Buffer::new().format(hi));
            }
        };
        let mut run: Option<(u32, u32)> = None;
        for cpu in self.iter() {
            run = match run {
                Some((lo, hi)) if cpu == hi + 1 => Some((lo, cpu)),
                Some(done) => {
                    flush(&mut put, done);
                    Some((cpu, cpu))
                }
                None => Some((cpu, cpu)),
            };
        }
        if let Some(done) = run {
            flush(&mut put, done);
        }
        put("}");
    }

    /// The set as `Display` prints it, appended to `out` (without the formatting machinery).
    pub fn push_to(&self, out: &mut String) {
        self.write_ranges(|piece| crate::text::push(out, piece));
    }
}

impl std::fmt::Display for CpuSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut written = Ok(());
        self.write_ranges(|piece| {
            if written.is_ok() {
                written = f.write_str(piece);
            }
        });
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_algebra_and_order() {
        let a: CpuSet = [0, 3, 64, 130].into();
        let b: CpuSet = [3, 130, 7].into();
        assert_eq!(a.len(), 4);
        assert_eq!(a.difference(&b).to_vec(), vec![0, 64]);
        assert_eq!(a.intersection(&b).to_vec(), vec![3, 130]);
        assert_eq!(a.union(&b).to_vec(), vec![0, 3, 7, 64, 130]);
        assert!(a.intersects(&b));
        assert!(!a.is_subset(&b));
        assert_eq!(format!("{}", CpuSet::from([0, 1, 2, 3, 8])), "{0-3,8}");
    }

    #[test]
    fn insert_remove() {
        let mut s = CpuSet::new();
        assert!(s.insert(200));
        assert!(!s.insert(200));
        assert!(s.contains(200));
        assert!(s.remove(200));
        assert!(!s.remove(200));
        assert!(s.is_empty());
        assert_eq!(s, CpuSet::new());
        assert_eq!(CpuSet::from([70]).difference(&CpuSet::from([70])), CpuSet::new());
    }
}
