//! The deserializer behind the generic pass: a value as given is either
//! TOML (from the file) or a variable's text, and the text is parsed as the
//! field's type asks — a number, `true`/`yes`/`1`, a comma-separated list, an
//! enum's name — so no table of key types is needed.

use super::sources::Given;
use serde::de::value::{SeqDeserializer, StringDeserializer};
use serde::de::{self, Deserializer, IntoDeserializer, Visitor};

type Error = toml::de::Error;

impl<'de> IntoDeserializer<'de, Error> for Given {
    type Deserializer = Given;
    fn into_deserializer(self) -> Given {
        self
    }
}

/// Forwards each `deserialize_*` to the TOML value or to the variable's text.
macro_rules! forward_given {
    ($($method:ident ( $($arg:ident : $ty:ty),* );)*) => {
        $(fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Error> {
            match self {
                Given::Toml(v) => v.$method($($arg,)* visitor),
                Given::Env(t) => EnvText(t).$method($($arg,)* visitor),
            }
        })*
    };
}

impl<'de> Deserializer<'de> for Given {
    type Error = Error;
    forward_given! {
        deserialize_any(); deserialize_bool(); deserialize_i8(); deserialize_i16();
        deserialize_i32(); deserialize_i64(); deserialize_u8(); deserialize_u16();
        deserialize_u32(); deserialize_u64(); deserialize_f32(); deserialize_f64();
        deserialize_char(); deserialize_str(); deserialize_string(); deserialize_bytes();
        deserialize_byte_buf(); deserialize_option(); deserialize_unit(); deserialize_seq();
        deserialize_map(); deserialize_identifier(); deserialize_ignored_any();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
    }
}

/// A variable's text, parsed as the field asks.
struct EnvText(String);

impl<'de> IntoDeserializer<'de, Error> for EnvText {
    type Deserializer = EnvText;
    fn into_deserializer(self) -> EnvText {
        self
    }
}

macro_rules! env_number {
    ($($method:ident => $visit:ident as $t:ty, $what:literal;)*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.0.trim().parse::<$t>() {
                Ok(n) => visitor.$visit(n),
                Err(_) => Err(de::Error::custom(format!("{:?} {}", crate::urls::shown_value(self.0.trim()), $what))),
            }
        })*
    };
}

impl<'de> Deserializer<'de> for EnvText {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_string(self.0)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0.trim() {
            "true" | "1" | "yes" => visitor.visit_bool(true),
            "false" | "0" | "no" => visitor.visit_bool(false),
            other => Err(de::Error::custom(format!(
                "{:?}: expected true or false",
                crate::urls::shown_value(other)
            ))),
        }
    }

    env_number! {
        deserialize_i8 => visit_i64 as i64, "is not a whole number";
        deserialize_i16 => visit_i64 as i64, "is not a whole number";
        deserialize_i32 => visit_i64 as i64, "is not a whole number";
        deserialize_i64 => visit_i64 as i64, "is not a whole number";
        deserialize_u8 => visit_u64 as u64, "is not a whole number";
        deserialize_u16 => visit_u64 as u64, "is not a whole number";
        deserialize_u32 => visit_u64 as u64, "is not a whole number";
        deserialize_u64 => visit_u64 as u64, "is not a whole number";
        deserialize_f32 => visit_f64 as f64, "is not a number";
        deserialize_f64 => visit_f64 as f64, "is not a number";
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.0.is_empty() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    /// Lists are comma-separated (docs/configuration.md).
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let items: Vec<EnvText> = self
            .0
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| EnvText(p.to_string()))
            .collect();
        visitor.visit_seq(SeqDeserializer::new(items.into_iter()))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let text: StringDeserializer<Error> = self.0.trim().to_string().into_deserializer();
        visitor.visit_enum(text)
    }

    serde::forward_to_deserialize_any! {
        char str string bytes byte_buf unit unit_struct tuple
        tuple_struct map struct identifier ignored_any
    }
}
