//! Kubernetes resource quantities (`500m`, `2`, `1Gi`, `1.5G`, `1e3`), exactly: a quantity is a
//! fraction, rounded up only when it is turned into a whole number of units.

use std::fmt;

/// A non-negative quantity, `num / den` of the base unit (bytes, cores).
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    num: u128,
    den: u128,
}

/// Equal in value: `1` is `1000m`.
impl PartialEq for Quantity {
    fn eq(&self, other: &Quantity) -> bool {
        self.num.saturating_mul(other.den) == other.num.saturating_mul(self.den)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct QuantityError(pub String);

impl fmt::Display for QuantityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The suffixes the API server accepts, as multipliers `(numerator, denominator)`.
const SUFFIXES: &[(&str, u128, u128)] = &[
    ("Ki", 1 << 10, 1),
    ("Mi", 1 << 20, 1),
    ("Gi", 1 << 30, 1),
    ("Ti", 1 << 40, 1),
    ("Pi", 1 << 50, 1),
    ("Ei", 1 << 60, 1),
    ("n", 1, 1_000_000_000),
    ("u", 1, 1_000_000),
    ("m", 1, 1_000),
    ("k", 1_000, 1),
    ("M", 1_000_000, 1),
    ("G", 1_000_000_000, 1),
    ("T", 1_000_000_000_000, 1),
    ("P", 1_000_000_000_000_000, 1),
    ("E", 1_000_000_000_000_000_000, 1),
];

fn pow10(e: u32) -> Option<u128> {
    10u128.checked_pow(e)
}

impl Quantity {
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        let bad = |why: &str| QuantityError(format!("{text:?} is not a quantity: {why}"));
        let s = text.strip_prefix('+').unwrap_or(text);
        if s.starts_with('-') {
            return Err(bad("it is negative"));
        }
        let digits_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let (number, suffix) = s.split_at(digits_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if fraction.contains('.') {
            return Err(bad("more than one '.'"));
        }
        if whole.is_empty() && fraction.is_empty() {
            return Err(bad("no digits"));
        }
        let too_big = || bad("too large");
        let digits = format!("{whole}{fraction}");
        let mut num: u128 = if digits.is_empty() { 0 } else { digits.parse().map_err(|_| too_big())? };
        let mut den = pow10(fraction.len() as u32).ok_or_else(too_big)?;
        // `E` alone and `Ei` are suffixes (exa, exbi); `e3`, `E-2` are exponents.
        let exponent = suffix.strip_prefix(['e', 'E']).filter(|_| SUFFIXES.iter().all(|(name, ..)| *name != suffix));
        let (mul, div) = if let Some(exp) = exponent {
            let e: i32 = exp.parse().map_err(|_| bad("the exponent is not an integer"))?;
            let p = pow10(e.unsigned_abs()).ok_or_else(too_big)?;
            if e >= 0 {
                (p, 1)
            } else {
                (1, p)
            }
        } else if suffix.is_empty() {
            (1, 1)
        } else {
            let Some(&(_, m, d)) = SUFFIXES.iter().find(|(name, _, _)| *name == suffix) else {
                return Err(bad(&format!("unknown suffix {suffix:?}")));
            };
            (m, d)
        };
        num = num.checked_mul(mul).ok_or_else(too_big)?;
        den = den.checked_mul(div).ok_or_else(too_big)?;
        Ok(Quantity { num, den })
    }

    pub fn zero() -> Quantity {
        Quantity { num: 0, den: 1 }
    }

    pub fn is_zero(&self) -> bool {
        self.num == 0
    }

    /// Whole `unit`s, rounded up (1.5 cores in cores: 2; 1 byte in MiB: 1).
    pub fn ceil_units(&self, unit: u128) -> u128 {
        let d = self.den.saturating_mul(unit);
        self.num.div_ceil(d)
    }

    /// Whether this is a whole number of `unit`s.
    pub fn is_whole(&self, unit: u128) -> bool {
        self.num.is_multiple_of(self.den.saturating_mul(unit))
    }

    pub fn add(&self, other: &Quantity) -> Quantity {
        // Saturating: quantities that overflow u128 are not resources any node has.
        let num = self.num.saturating_mul(other.den).saturating_add(other.num.saturating_mul(self.den));
        Quantity { num, den: self.den.saturating_mul(other.den) }.reduced()
    }

    pub fn max(self, other: Quantity) -> Quantity {
        if self.num.saturating_mul(other.den) >= other.num.saturating_mul(self.den) {
            self
        } else {
            other
        }
    }

    fn reduced(self) -> Quantity {
        fn gcd(a: u128, b: u128) -> u128 {
            if b == 0 {
                a
            } else {
                gcd(b, a % b)
            }
        }
        let g = gcd(self.num, self.den).max(1);
        Quantity { num: self.num / g, den: self.den / g }
    }
}

/// A quantity as an API object carries it: a string (`"500m"`), or a bare JSON number (`2`,
/// `0.5`), which Go's `Quantity` also reads. Kept as text, parsed where the field is known, so an
/// error names the field.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuantityText(pub String);

impl<'de> serde::Deserialize<'de> for QuantityText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Sent {
            Text(String),
            Number(serde_json::Number),
        }
        Ok(QuantityText(match Sent::deserialize(d)? {
            Sent::Text(s) => s,
            Sent::Number(n) => n.to_string(),
        }))
    }
}

impl QuantityText {
    pub fn parse(&self) -> Result<Quantity, QuantityError> {
        Quantity::parse(&self.0)
    }
}

/// Bytes as the API server would print them: the largest binary suffix that divides exactly.
pub fn bytes(n: u64) -> String {
    for (suffix, shift) in [("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
        if n != 0 && n.is_multiple_of(1u64 << shift) {
            return format!("{}{suffix}", n >> shift);
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_as_the_api_server_reads_them() {
        let cases: &[(&str, u128, u128)] = &[
            // text, unit, whole units rounded up
            ("2", 1, 2),
            ("500m", 1, 1),
            ("1500m", 1, 2),
            ("2000m", 1, 2),
            ("1Gi", 1 << 20, 1024),
            ("1G", 1 << 20, 954),
            ("1.5Gi", 1 << 20, 1536),
            ("128974848", 1 << 20, 123),
            ("129e6", 1 << 20, 124),
            ("123Mi", 1 << 20, 123),
            ("0.5", 1, 1),
            (".5", 1000, 1),
            ("1e-3", 1, 1),
            ("1Ei", 1 << 60, 1),
            ("2E", 1_000_000_000_000_000_000, 2),
            ("1E3", 1, 1000),
        ];
        for &(text, unit, want) in cases {
            let q = Quantity::parse(text).unwrap();
            assert_eq!(q.ceil_units(unit), want, "{text}");
        }
        assert!(Quantity::parse("2000m").unwrap().is_whole(1));
        assert_eq!(Quantity::parse("1").unwrap(), Quantity::parse("1000m").unwrap());
        assert_eq!(Quantity::parse("1Gi").unwrap(), Quantity::parse("1024Mi").unwrap());
        assert!(!Quantity::parse("1500m").unwrap().is_whole(1));
        for bad in ["", "-1", "1x", "Gi", "1.2.3", "1e", "1ee3", "99999999999999999999999999999999999999999"] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
        let sum = Quantity::parse("500m").unwrap().add(&Quantity::parse("1.5").unwrap());
        assert!(sum.is_whole(1) && sum.ceil_units(1) == 2);
        assert_eq!(bytes(2 << 30), "2Gi");
        assert_eq!(bytes(3 << 20), "3Mi");
        assert_eq!(bytes(1000), "1000");
    }
}
