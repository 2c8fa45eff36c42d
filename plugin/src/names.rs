//! The model's enums that are read and written by name (Nova's spellings), each declared once
//! with its names: the flavor parser, the JSON formats (the host's and this crate's), the
//! contract conversions and the printed documents all take them from here.

/// An enum known by name.
pub trait Named: Copy + PartialEq + Sized + 'static {
    /// Every value with its name, in declaration order.
    const NAMES: &'static [(&'static str, Self)];

    fn name(self) -> &'static str;

    fn from_name(name: &str) -> Option<Self> {
        Self::NAMES.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
    }

    /// The names for an error message: "shared, dedicated, mixed".
    fn choices() -> String {
        Self::NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
    }
}

/// Declares an enum and its names together, so no value can lack a name or share one.
#[macro_export]
macro_rules! named_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// The value's name (`const`, for constants built from it).
            pub const fn name_const(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl $crate::names::Named for $name {
            const NAMES: &'static [(&'static str, Self)] = &[$(($text, $name::$variant),)+];

            fn name(self) -> &'static str {
                self.name_const()
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::Named;
    use crate::{AccountingCode, CpuPolicy, EmulatorThreads, Policy, Shortfall, ThreadPolicy};

    fn round_trips<T: Named + std::fmt::Debug>() {
        for &(name, value) in T::NAMES {
            assert_eq!(value.name(), name);
            assert_eq!(T::from_name(name), Some(value));
        }
        let mut names: Vec<&str> = T::NAMES.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), T::NAMES.len(), "a name given twice");
        assert_eq!(T::from_name("no such name"), None);
    }

    #[test]
    fn every_name_reads_back_as_its_value() {
        round_trips::<CpuPolicy>();
        round_trips::<ThreadPolicy>();
        round_trips::<EmulatorThreads>();
        round_trips::<crate::request::PciNumaPolicy>();
        round_trips::<Shortfall>();
        round_trips::<AccountingCode>();
        round_trips::<Policy>();
        assert_eq!(CpuPolicy::choices(), "shared, dedicated, mixed");
    }
}
