//! The POST policy document: parsed strictly (unknown elements, operators, repeated
//! keys and non-string values refused), and its conditions checked against the fields.

use super::*;

/// One POST policy condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Condition {
    /// The field equals `value`: `{"field": "value"}` (`object`) or `["eq", "$field", …]`.
    Eq {
        field: String,
        value: String,
        object: bool,
    },
    /// The field starts with `prefix` (`""`: any value): `["starts-with", "$field", …]`.
    StartsWith { field: String, prefix: String },
    /// The file's size in bytes: `["content-length-range", min, max]`.
    LengthRange { min: u64, max: u64 },
}

impl Condition {
    /// The field the condition is on (`None` for the file's size).
    fn field(&self) -> Option<&str> {
        match self {
            Condition::Eq { field, .. } | Condition::StartsWith { field, .. } => Some(field),
            Condition::LengthRange { .. } => None,
        }
    }

    /// The condition as policy JSON.
    fn to_json(&self) -> Value {
        match self {
            Condition::Eq {
                field,
                value,
                object: true,
            } => {
                let mut map = serde_json::Map::new();
                map.insert(field.clone(), Value::String(value.clone()));
                Value::Object(map)
            }
            Condition::Eq { field, value, .. } => {
                serde_json::json!(["eq", format!("${field}"), value])
            }
            Condition::StartsWith { field, prefix } => {
                serde_json::json!(["starts-with", format!("${field}"), prefix])
            }
            Condition::LengthRange { min, max } => {
                serde_json::json!(["content-length-range", min, max])
            }
        }
    }

    /// The condition as S3 quotes a failed one (`["eq", "$key", "a"]`), shortened.
    fn quoted(&self) -> String {
        let json = match self {
            Condition::Eq { field, value, .. } => {
                serde_json::json!(["eq", format!("${field}"), value])
            }
            other => other.to_json(),
        };
        shorten(json.to_string())
    }
}

fn shorten(mut text: String) -> String {
    if let Some((i, _)) = text.char_indices().nth(QUOTED_CHARS_MAX) {
        text.truncate(i);
        text.push('…');
    }
    text
}

/// A decoded POST policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Policy {
    /// `expiration` as sent (kept verbatim when re-signing).
    expiration_text: String,
    /// `expiration`, parsed.
    pub(super) expiration: Timestamp,
    /// Its conditions, in order.
    pub(super) conditions: Vec<Condition>,
}

impl Policy {
    /// Decodes the `policy` field: base64 (standard, padded) of UTF-8 JSON.
    pub(super) fn decode(b64: &str) -> Result<Policy, SigV4Error> {
        let json = base64_decode(b64).ok_or(SigV4Error::InvalidPolicyDocument(
            "the policy is not base64",
        ))?;
        let raw: RawPolicy = serde_json::from_slice(&json)
            .map_err(|_| SigV4Error::InvalidPolicyDocument("Invalid JSON."))?;
        if let Some(problem) = raw.problem {
            return Err(SigV4Error::InvalidPolicyDocument(problem));
        }
        let expiration_text = raw.expiration.ok_or(SigV4Error::InvalidPolicyDocument(
            "Policy missing expiration.",
        ))?;
        let expiration = Timestamp::parse_iso8601(&expiration_text).ok_or(
            SigV4Error::InvalidPolicyDocument("Invalid 'expiration' value."),
        )?;
        let raw_conditions = raw.conditions.ok_or(SigV4Error::InvalidPolicyDocument(
            "Policy missing conditions.",
        ))?;
        let mut conditions = Vec::with_capacity(raw_conditions.len());
        for raw in raw_conditions {
            raw.into_conditions(&mut conditions)?;
        }
        Ok(Policy {
            expiration_text,
            expiration,
            conditions,
        })
    }

    /// The tightest `content-length-range` (every one must hold).
    pub(super) fn length_range(&self) -> Option<(u64, u64)> {
        self.conditions.iter().fold(None, |acc, c| match (c, acc) {
            (Condition::LengthRange { min, max }, None) => Some((*min, *max)),
            (Condition::LengthRange { min, max }, Some((lo, hi))) => {
                Some(((*min).max(lo), (*max).min(hi)))
            }
            _ => acc,
        })
    }

    /// Every condition holds for the form's fields (`bucket`: the request's bucket), and
    /// every field is named by a condition.
    pub(super) fn check(&self, form: &FormPrefix, bucket: &str) -> Result<(), SigV4Error> {
        let value = |field: &str| {
            if field.eq_ignore_ascii_case("bucket") {
                Some(bucket)
            } else {
                form.field(field)
            }
        };
        for condition in &self.conditions {
            let holds = match condition {
                Condition::Eq {
                    field, value: want, ..
                } => value(field) == Some(want.as_str()),
                Condition::StartsWith { field, prefix } => value(field)
                    .unwrap_or_default()
                    .starts_with(prefix.as_str()),
                Condition::LengthRange { .. } => true,
            };
            if !holds {
                return Err(SigV4Error::PolicyConditionFailed(condition.quoted()));
            }
        }
        for field in &form.fields {
            let name = field.name.to_ascii_lowercase();
            if UNCOVERED_FIELDS.contains(&name.as_str()) || name.starts_with("x-ignore-") {
                continue;
            }
            let named = self
                .conditions
                .iter()
                .any(|c| c.field().is_some_and(|f| f.eq_ignore_ascii_case(&name)));
            if !named {
                return Err(SigV4Error::PolicyExtraField(shorten(field.name.clone())));
            }
        }
        Ok(())
    }

    /// The policy JSON re-signed for `credential` at `date`: conditions on
    /// `x-amz-credential` and `x-amz-date` become `eq` the new values, in place.
    pub(super) fn resigned_json(&self, credential: &str, date: &str) -> String {
        let conditions: Vec<Value> = self
            .conditions
            .iter()
            .map(|c| {
                let new = match c.field() {
                    Some(f) if f.eq_ignore_ascii_case("x-amz-credential") => Some(credential),
                    Some(f) if f.eq_ignore_ascii_case("x-amz-date") => Some(date),
                    _ => None,
                };
                match (new, c.field()) {
                    (Some(value), Some(field)) => Condition::Eq {
                        field: field.to_owned(),
                        value: value.to_owned(),
                        object: true,
                    }
                    .to_json(),
                    _ => c.to_json(),
                }
            })
            .collect();
        serde_json::json!({
            "expiration": self.expiration_text,
            "conditions": conditions,
        })
        .to_string()
    }
}

/// The policy's top level as sent; `problem` is set for what JSON allows but a policy
/// does not (an unknown or repeated element).
struct RawPolicy {
    expiration: Option<String>,
    conditions: Option<Vec<RawCondition>>,
    problem: Option<&'static str>,
}

impl<'de> Deserialize<'de> for RawPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PolicyVisitor;
        impl<'de> Visitor<'de> for PolicyVisitor {
            type Value = RawPolicy;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a POST policy object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawPolicy, A::Error> {
                let mut raw = RawPolicy {
                    expiration: None,
                    conditions: None,
                    problem: None,
                };
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "expiration" if raw.expiration.is_none() => {
                            raw.expiration = Some(map.next_value()?);
                        }
                        "conditions" if raw.conditions.is_none() => {
                            raw.conditions = Some(map.next_value()?);
                        }
                        "expiration" | "conditions" => {
                            map.next_value::<IgnoredAny>()?;
                            raw.problem = Some("a policy element appears twice.");
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            raw.problem = Some("Unexpected policy element.");
                        }
                    }
                }
                Ok(raw)
            }
        }
        d.deserialize_map(PolicyVisitor)
    }
}

/// A condition as sent: an object of exact matches, an array, or something else.
enum RawCondition {
    Object(Vec<(String, Value)>),
    Array(Vec<Value>),
    Other,
}

impl<'de> Deserialize<'de> for RawCondition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ConditionVisitor;
        impl<'de> Visitor<'de> for ConditionVisitor {
            type Value = RawCondition;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a POST policy condition")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawCondition, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(RawCondition::Object(entries))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawCondition, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Value>()? {
                    items.push(item);
                }
                Ok(RawCondition::Array(items))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawCondition, E> {
                Ok(RawCondition::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawCondition, E> {
                Ok(RawCondition::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawCondition, E> {
                Ok(RawCondition::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawCondition, E> {
                Ok(RawCondition::Other)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<RawCondition, E> {
                Ok(RawCondition::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawCondition, E> {
                Ok(RawCondition::Other)
            }
        }
        d.deserialize_any(ConditionVisitor)
    }
}

impl RawCondition {
    /// Appends the conditions this one says (an object may hold several exact matches).
    fn into_conditions(self, out: &mut Vec<Condition>) -> Result<(), SigV4Error> {
        let invalid = SigV4Error::InvalidPolicyDocument("Invalid Condition.");
        match self {
            RawCondition::Object(entries) => {
                if entries.is_empty() {
                    return Err(invalid);
                }
                for (i, (field, value)) in entries.iter().enumerate() {
                    let Value::String(value) = value else {
                        return Err(invalid);
                    };
                    if entries[..i].iter().any(|(f, _)| f == field) || field.is_empty() {
                        return Err(invalid);
                    }
                    out.push(Condition::Eq {
                        field: field.clone(),
                        value: value.clone(),
                        object: true,
                    });
                }
                Ok(())
            }
            RawCondition::Array(items) => {
                let [Value::String(op), a, b] = &items[..] else {
                    return Err(invalid);
                };
                let condition = if op.eq_ignore_ascii_case("content-length-range") {
                    let (min, max) = (
                        length(a).ok_or(invalid.clone())?,
                        length(b).ok_or(invalid.clone())?,
                    );
                    if min > max {
                        return Err(invalid);
                    }
                    Condition::LengthRange { min, max }
                } else {
                    let (Value::String(field), Value::String(value)) = (a, b) else {
                        return Err(invalid);
                    };
                    let field = field
                        .strip_prefix('$')
                        .filter(|f| !f.is_empty())
                        .ok_or(invalid.clone())?
                        .to_owned();
                    let value = value.clone();
                    if op.eq_ignore_ascii_case("eq") {
                        Condition::Eq {
                            field,
                            value,
                            object: false,
                        }
                    } else if op.eq_ignore_ascii_case("starts-with") {
                        Condition::StartsWith {
                            field,
                            prefix: value,
                        }
                    } else {
                        return Err(invalid);
                    }
                };
                out.push(condition);
                Ok(())
            }
            RawCondition::Other => Err(invalid),
        }
    }
}

/// A byte count in a `content-length-range`: a non-negative integer, or one in a string.
fn length(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
}
