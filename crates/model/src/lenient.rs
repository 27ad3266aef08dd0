//! Lenient field decoding, as MidoNet's Jackson-based server did it.
//!
//! The real `midonet-cli` sends numeric fields as JSON strings
//! (`"networkLength":"24"`, `"tpDst":{"start":"22","end":"22"}`) and the
//! Python library sends `null` for booleans and numbers it does not set
//! (`"invNwDst":null`). Rejecting either would break clients that work
//! against MidoNet, so every field that clients send goes through one of
//! these: numbers may be numbers or numeric strings, `null`/`""` mean "unset",
//! booleans may be `null` (false) or `"true"`/`"false"`.
//!
//! Out-of-range or non-numeric values are still errors, naming the value.

use std::fmt::Display;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer};

/// A JSON scalar as the lenient fields take it.
///
/// Decoded by a visitor, not `#[serde(untagged)]`: an untagged enum buffers
/// the value and tries each variant in turn, formatting an error message for
/// every variant that does not fit (a string field paid two), which made
/// these fields most of the cost of decoding a port.
enum Scalar<'a> {
    Bool(bool),
    Num(serde_json::Number),
    Str(std::borrow::Cow<'a, str>),
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a boolean, a number or a string")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(b))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(n.into()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(n.into()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
                serde_json::Number::from_f64(n)
                    .map(Scalar::Num)
                    .ok_or_else(|| E::custom(format!("expected a number, got {n}")))
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(s.into()))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(s.to_owned().into()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(s.into()))
            }
        }
        d.deserialize_any(V)
    }
}

fn parse_scalar<T, E>(s: Scalar<'_>, what: &str) -> Result<Option<T>, E>
where
    T: FromStr,
    T::Err: Display,
    E: de::Error,
{
    let number;
    let text = match &s {
        Scalar::Num(n) => {
            number = n.to_string();
            number.as_str()
        }
        Scalar::Str(s) => {
            let t = s.trim();
            if t.is_empty() {
                return Ok(None);
            }
            t
        }
        Scalar::Bool(b) => {
            return Err(E::custom(format!("expected {what}, got boolean {b}")));
        }
    };
    text.parse::<T>()
        .map(Some)
        .map_err(|e| E::custom(format!("expected {what}, got `{text}`: {e}")))
}

/// `Option<number>` from a number, a numeric string, `null` or `""`.
pub fn opt_num<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    match Option::<Scalar<'_>>::deserialize(d)? {
        None => Ok(None),
        Some(s) => parse_scalar(s, "a number"),
    }
}

/// A number with a default for `null`/`""`/absent (use with `#[serde(default)]`).
pub fn num<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + Default,
    T::Err: Display,
{
    opt_num(d).map(Option::unwrap_or_default)
}

/// `Option<T>` parsed from a string (`T: FromStr`, e.g. IP addresses, MACs,
/// enums); `null` and `""` mean unset.
pub fn opt_parse<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    match Option::<Scalar<'_>>::deserialize(d)? {
        None => Ok(None),
        Some(s) => parse_scalar(s, "a value"),
    }
}

fn scalar_bool<E: de::Error>(s: Scalar<'_>) -> Result<bool, E> {
    match s {
        Scalar::Bool(b) => Ok(b),
        Scalar::Num(n) => match n.as_u64() {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            _ => Err(E::custom(format!("expected a boolean, got {n}"))),
        },
        Scalar::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" | "" => Ok(false),
            other => Err(E::custom(format!("expected a boolean, got `{other}`"))),
        },
    }
}

/// A boolean from `true`/`false`, `"true"`/`"false"`, `0`/`1`, or `null`
/// (false).
pub fn boolean<'de, D>(d: D) -> Result<bool, D::Error>
where
    D: Deserializer<'de>,
{
    Option::<Scalar<'_>>::deserialize(d)?.map_or(Ok(false), scalar_bool)
}

/// A boolean that defaults to `true` when `null` (admin state).
pub fn boolean_default_true<'de, D>(d: D) -> Result<bool, D::Error>
where
    D: Deserializer<'de>,
{
    Option::<Scalar<'_>>::deserialize(d)?.map_or(Ok(true), scalar_bool)
}

/// A list where `null` means empty.
pub fn vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// `true` for serde's `default` on admin-state fields.
pub fn default_true() -> bool {
    true
}

/// Declares a string-valued enum with a canonical spelling, accepted aliases,
/// case-insensitive parsing, `Display`, and serde via the canonical string.
/// Unknown strings are an error listing what is accepted. The type's
/// [`schema::Shape`](crate::schema::Shape) is the choice of its canonical
/// spellings.
#[macro_export]
macro_rules! string_enum {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $variant:ident => $canon:literal $(| $alias:literal)* ),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// Every variant, in declaration order.
            // Not every generated enum (e.g. one private to a test) lists its variants.
            #[allow(dead_code)]
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The canonical REST spelling.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $canon),+ }
            }
            /// Every canonical REST spelling, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($canon),+];
        }
        impl $crate::schema::HasShape for $name {
            const SHAPE: $crate::schema::Shape = $crate::schema::Shape::Choice(Self::NAMES);
        }
        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let t = s.trim();
                $(
                    if t.eq_ignore_ascii_case($canon) $(|| t.eq_ignore_ascii_case($alias))* {
                        return Ok($name::$variant);
                    }
                )+
                Err(format!("unknown value `{}`; expected one of: {}", t,
                    [$($canon),+].join(", ")))
            }
        }
        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    struct T {
        #[serde(default, deserialize_with = "super::opt_num")]
        n: Option<u8>,
        #[serde(default, deserialize_with = "super::boolean")]
        b: bool,
        #[serde(default = "super::default_true", deserialize_with = "super::boolean_default_true")]
        up: bool,
        #[serde(default, deserialize_with = "super::vec")]
        v: Vec<u32>,
    }

    #[test]
    fn numbers_as_strings_and_nulls_are_accepted() {
        let t: T =
            serde_json::from_str(r#"{"n":"24","b":null,"up":null,"v":null}"#).expect("parse");
        assert_eq!(t.n, Some(24));
        assert!(!t.b);
        assert!(t.up);
        assert!(t.v.is_empty());
        let t: T = serde_json::from_str(r#"{"n":7,"b":"true"}"#).expect("parse");
        assert_eq!(t.n, Some(7));
        assert!(t.b && t.up);
        let t: T = serde_json::from_str(r#"{"n":""}"#).expect("parse");
        assert_eq!(t.n, None);
        // Escaped text is copied out of the input, not borrowed; a reader
        // never lends.
        let t: T = serde_json::from_str(r#"{"n":"\u0032\u0034"}"#).expect("parse");
        assert_eq!(t.n, Some(24));
        let t: T = serde_json::from_reader(&br#"{"n":" 9 ","b":1}"#[..]).expect("parse");
        assert_eq!((t.n, t.b), (Some(9), true));
    }

    #[test]
    fn lists_and_objects_are_not_scalars() {
        for body in [r#"{"n":[1]}"#, r#"{"n":{"a":1}}"#, r#"{"b":[]}"#, r#"{"n":1.5}"#] {
            let e = serde_json::from_str::<T>(body).expect_err(body);
            assert!(!e.to_string().is_empty(), "{body}");
        }
    }

    #[test]
    fn out_of_range_and_garbage_are_errors_naming_the_value() {
        let e = serde_json::from_str::<T>(r#"{"n":"300"}"#).expect_err("300 > u8");
        assert!(e.to_string().contains("300"), "{e}");
        let e = serde_json::from_str::<T>(r#"{"b":"maybe"}"#).expect_err("not a bool");
        assert!(e.to_string().contains("maybe"), "{e}");
    }

    crate::string_enum! {
        pub enum Color { Red => "red" | "r", Green => "Green" }
    }

    #[test]
    fn string_enum_is_case_insensitive_and_lists_choices() {
        assert_eq!("RED".parse::<Color>(), Ok(Color::Red));
        assert_eq!("r".parse::<Color>(), Ok(Color::Red));
        assert_eq!(serde_json::to_string(&Color::Green).expect("ser"), "\"Green\"");
        let e = "blue".parse::<Color>().expect_err("unknown");
        assert!(e.contains("red, Green"), "{e}");
        assert_eq!(Color::ALL, [Color::Red, Color::Green]);
        assert_eq!(Color::NAMES, ["red", "Green"]);
    }
}
