//! [`catalogue!`](crate::catalogue): an enum of documented wire names (the problem codes, the
//! audit actions): each variant's name on the wire and what it means, `ALL`, `as_str`, `doc`,
//! `parse`, `Display` and `Serialize` (as the name), so a call site names a variant, never a
//! string, and the API documentation is built from the same list.

/// Declares a catalogue enum: `catalogue! { /// docs \n pub enum Name { Variant = "wire": "meaning.", … } }`.
#[macro_export]
macro_rules! catalogue {
    ($(#[$meta:meta])* pub enum $name:ident { $($variant:ident = $wire:literal: $doc:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $(#[doc = $doc] $variant,)*
        }

        impl $name {
            /// Every entry, in catalogue order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The name on the wire (and in the store).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)*
                }
            }

            /// What it means, for the API documentation.
            pub const fn doc(self) -> &'static str {
                match self {
                    $($name::$variant => $doc,)*
                }
            }

            /// The entry for a wire name, if it is one.
            pub fn parse(s: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|e| e.as_str() == s)
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

/// Checks a catalogue: names unique and of `allowed` bytes, meanings full sentences, `parse`
/// the inverse of `as_str`. For the catalogues' unit tests.
pub fn check<T: Copy + PartialEq + std::fmt::Debug>(
    all: &[T],
    as_str: fn(T) -> &'static str,
    doc: fn(T) -> &'static str,
    parse: fn(&str) -> Option<T>,
    allowed: fn(u8) -> bool,
) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for e in all.iter().copied() {
        let s = as_str(e);
        if !seen.insert(s) {
            return Err(format!("{s} twice"));
        }
        if s.is_empty() || !s.bytes().all(allowed) {
            return Err(format!("{s}: not a well-formed name"));
        }
        if !doc(e).ends_with('.') {
            return Err(format!("{s}: its meaning is not a sentence"));
        }
        if parse(s) != Some(e) {
            return Err(format!("{s}: parse does not give it back"));
        }
    }
    if parse("no such entry").is_some() {
        return Err("parse accepts an unknown name".into());
    }
    Ok(())
}
