//! CPU lists as people read them: `0-3,8,10-11` (the kernel's list syntax), so an error or a
//! report naming thousands of CPUs stays one short line.

/// The CPUs as ranges, ascending; `none` for an empty list.
pub fn text(cpus: &[u32]) -> String {
    let mut v = cpus.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        parts.push(if j > i { format!("{}-{}", v[i], v[j]) } else { v[i].to_string() });
        i = j + 1;
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(",")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ranges() {
        assert_eq!(super::text(&[3, 0, 1, 2, 8, 10, 11, 11]), "0-3,8,10-11");
        assert_eq!(super::text(&[]), "none");
    }
}
