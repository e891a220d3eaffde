//! The reload table against the schema: every key the raw structs accept is classified
//! exactly once, and every entry of the table names a key that exists. The keys come from
//! the structs themselves (a deserializer that walks them, answering each field with a
//! plausible value), so a key added to `raw` without a classification fails here.

use std::cell::RefCell;

use serde::de::value::{Error, StrDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, Visitor};
use serde::Deserialize;

use super::raw::RawConfig;
use super::restart::{reload_class, Reload, RELOAD_KEYS};

/// Walks a `Deserialize` type, recording the path of every leaf value it asks for.
struct Tracer<'a> {
    path: String,
    leaves: &'a RefCell<Vec<String>>,
}

impl<'a> Tracer<'a> {
    fn at(&self, segment: &str) -> Tracer<'a> {
        let path = match (self.path.is_empty(), segment.starts_with('[')) {
            (true, _) | (false, true) => format!("{}{segment}", self.path),
            (false, false) => format!("{}.{segment}", self.path),
        };
        Tracer {
            path,
            leaves: self.leaves,
        }
    }

    fn leaf(&self) {
        // An array of scalars (`listen = [...]`) is one key, not one per item.
        let path = self.path.strip_suffix("[]").unwrap_or(&self.path);
        self.leaves.borrow_mut().push(path.to_owned());
    }
}

/// The fields of one struct, handed to its visitor one by one.
struct Fields<'a> {
    tracer: Tracer<'a>,
    fields: std::slice::Iter<'static, &'static str>,
    current: &'static str,
}

impl<'de> de::MapAccess<'de> for Fields<'_> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(field) = self.fields.next() else {
            return Ok(None);
        };
        self.current = field;
        seed.deserialize(StrDeserializer::<Error>::new(field))
            .map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(self.tracer.at(self.current))
    }
}

/// One entry of a map keyed by a name (`pool_credentials`): its key is `*`.
struct OneEntry<'a> {
    tracer: Option<Tracer<'a>>,
    given: bool,
}

impl<'de> de::MapAccess<'de> for OneEntry<'_> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if std::mem::replace(&mut self.given, true) {
            return Ok(None);
        }
        seed.deserialize(StrDeserializer::<Error>::new("name"))
            .map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let tracer = self
            .tracer
            .take()
            .ok_or_else(|| de::Error::custom("one entry only"))?;
        seed.deserialize(tracer.at("*"))
    }
}

/// One element of an array.
struct OneItem<'a>(Option<Tracer<'a>>);

impl<'de> de::SeqAccess<'de> for OneItem<'_> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.0.take() {
            Some(tracer) => seed.deserialize(tracer.at("[]")).map(Some),
            None => Ok(None),
        }
    }
}

impl<'de> Deserializer<'de> for Tracer<'_> {
    type Error = Error;

    /// The hand-written visitors (sizes, durations, `expect_status`, `op`) take a string
    /// or a number; their `expecting` text says which a plausible value is.
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        let expecting = format!("{}", &visitor as &dyn de::Expected);
        if expecting.contains("size") {
            visitor.visit_u64(1)
        } else if expecting.contains("duration") {
            visitor.visit_str("1s")
        } else {
            visitor.visit_str("1")
        }
    }
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_bool(true)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_u64(1)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_f64(1.0)
    }
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_str("x")
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(OneItem(Some(self)))
    }
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_map(OneEntry {
            tracer: Some(self),
            given: false,
        })
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(Fields {
            tracer: self,
            fields: fields.iter(),
            current: "",
        })
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.leaf();
        let first = variants.first().copied().unwrap_or_default();
        visitor.visit_enum(IntoDeserializer::<Error>::into_deserializer(first))
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }
    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char bytes byte_buf unit unit_struct tuple tuple_struct identifier
    }
}

/// Every key path of the schema, `[]` for any index of an array of tables and `*` for
/// any name of a map.
fn schema_keys() -> Vec<String> {
    let leaves = RefCell::new(Vec::new());
    let tracer = Tracer {
        path: String::new(),
        leaves: &leaves,
    };
    if let Err(e) = RawConfig::deserialize(tracer) {
        panic!("walking the schema: {e}");
    }
    leaves.into_inner()
}

/// A pattern of the table matches a schema path segment by segment (`*` any name).
fn covers(pattern: &str, key: &str) -> bool {
    let (p, k): (Vec<_>, Vec<_>) = (pattern.split('.').collect(), key.split('.').collect());
    p.len() == k.len() && p.iter().zip(&k).all(|(p, k)| p == k || *p == "*")
}

#[test]
fn the_schema_walk_finds_keys_of_every_kind() {
    let keys = schema_keys();
    for key in [
        "appliance.listen",
        "appliance.drain_grace",
        "pool[].nodes",
        "pool[].health.expect_status",
        "pool[].credentials.secret_file",
        "tenant[].pool_credentials.*.access_key",
        "tenant[].rate.burst",
        "tenant[].connections_max",
        "rule[].op",
        "tls.certificate[].cert",
        "auth.mode",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} not in {keys:#?}");
    }
    assert!(keys.len() > 100, "{} keys: {keys:#?}", keys.len());
}

#[test]
fn every_key_of_the_schema_is_classified_exactly_once() {
    let keys = schema_keys();
    let mut missing = Vec::new();
    for key in &keys {
        let hits: Vec<_> = RELOAD_KEYS
            .iter()
            .filter(|(pattern, _)| covers(pattern, key))
            .collect();
        match hits.len() {
            1 => {}
            0 => missing.push(key.clone()),
            _ => panic!("{key} is classified {} times: {hits:?}", hits.len()),
        }
    }
    assert!(
        missing.is_empty(),
        "keys without a reload classification (add them to RELOAD_KEYS): {missing:#?}"
    );
    for (pattern, _) in RELOAD_KEYS {
        assert!(
            keys.iter().any(|k| covers(pattern, k)),
            "RELOAD_KEYS names {pattern}, which the schema does not have"
        );
    }
}

#[test]
fn reload_class_takes_file_paths_with_indexes_and_names() {
    assert_eq!(reload_class("appliance.listen"), Some(Reload::Restart));
    assert_eq!(reload_class("appliance.drain_timeout"), Some(Reload::Live));
    assert_eq!(reload_class("pool[3].health.interval"), Some(Reload::Live));
    assert_eq!(
        reload_class("tenant[0].pool_credentials.fast.region"),
        Some(Reload::Live)
    );
    assert_eq!(reload_class("tls.listen[1]"), Some(Reload::Restart));
    assert_eq!(reload_class("appliance.nonesuch"), None);
}
