//! GVariant glue over `zgvariant`: serialization context, the insertion-ordered `a{sv}` that
//! ostree writes, and [`MetaValue`], the typed value of commit and summary metadata.
//!
//! All numbers are written in host (little-endian) order; ostree pre-swaps the fields it wants
//! big-endian, and so do our callers (see `MetaValue::U64Be`). Framing offsets are always LE.

use std::fmt;

use anyhow::{Context as _, Result};
use serde::de::{MapAccess, Visitor};
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zgvariant::serialized::{Context, Data};
use zgvariant::{LE, Signature, Type, Variant};

/// Serializes `value` in GVariant normal form (host order = little-endian on our targets).
pub fn to_bytes<T: Serialize + Type>(value: &T) -> Result<Vec<u8>> {
    let data = zgvariant::to_bytes(Context::new(LE, 0), value).context("serializing a GVariant")?;
    if data.bytes().is_empty()
        && let Some(normal) = empty_structure(T::SIGNATURE)
    {
        return Ok(normal);
    }
    Ok(data.bytes().to_vec())
}

/// GLib's normal form of a structure whose members all serialize to nothing (empty arrays and
/// dicts, nothing maybes, and such structures nested), or `None` for any other signature.
///
/// zgvariant writes such a structure as 0 bytes and cannot read that back; GLib (and so
/// ostree) writes the members' framing offsets, all 0: an empty dirtree `(a(say)a(sayay))`
/// is one `00` byte, an empty summary too. Hand-written here because the crate has no switch
/// for it; only the empty case differs from GLib.
fn empty_structure(signature: &Signature) -> Option<Vec<u8>> {
    let Signature::Structure(fields) = signature else {
        return None;
    };
    let fields: Vec<&Signature> = fields.iter().collect();
    let mut body = Vec::new();
    let mut offsets = Vec::new();
    for (i, field) in fields.iter().enumerate() {
        let align = field.alignment_gvariant();
        body.resize(body.len().next_multiple_of(align), 0);
        match field {
            Signature::Array(_) | Signature::Dict { .. } | Signature::Maybe(_) => {}
            Signature::Structure(_) => body.extend(empty_structure(field)?),
            _ => return None,
        }
        if i + 1 < fields.len() {
            offsets.push(body.len());
        }
    }
    // Bodies this small always take one-byte offsets.
    let offsets = offsets.iter().rev().map(|&o| u8::try_from(o).ok());
    body.extend(offsets.collect::<Option<Vec<u8>>>()?);
    Some(body)
}

/// Parses a GVariant of type `T` from `bytes`.
pub fn from_bytes<T: serde::de::DeserializeOwned + Type>(bytes: &[u8]) -> Result<T> {
    let data = Data::new(bytes, Context::new(LE, 0));
    let (v, _) = data
        .deserialize::<T>()
        .map_err(|e| anyhow::anyhow!("invalid GVariant of type {}: {e}", T::SIGNATURE))?;
    Ok(v)
}

/// Ordered `a{sv}` metadata: keys are written in this order (ostree writes builder order).
pub type Metadata = Vec<(String, MetaValue)>;

/// One value of commit or summary metadata, written as a GVariant `v`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaValue {
    /// A string, `s`.
    Str(String),
    /// A string array, `as`.
    StrList(Vec<String>),
    /// A boolean, `b`.
    Bool(bool),
    /// A `t` stored big-endian, as ostree does for timestamps.
    U64Be(u64),
    /// A `t` in host order. Values read back from disk are always this variant.
    U64(u64),
    /// A `u`, in host order.
    U32(u32),
    /// A byte string, `ay`.
    Bytes(Vec<u8>),
    /// An array of byte strings, `aay`.
    BytesList(Vec<Vec<u8>>),
    /// `a(sssss)`: rpm-ostree's `rpmostree.rpmdb.pkglist` (name, epoch, version, release, arch).
    PkgList(Vec<(String, String, String, String, String)>),
    /// A nested `a{sv}`.
    Dict(Metadata),
    /// A value of a type we do not model, kept as its type string and a printable form
    /// (read-only: writing it is an error).
    Other {
        /// The GVariant type string.
        signature: String,
        /// The value in a printable (debug) form.
        text: String,
    },
}

impl MetaValue {
    /// The GVariant type string of the value.
    pub fn signature(&self) -> &str {
        match self {
            MetaValue::Str(_) => "s",
            MetaValue::StrList(_) => "as",
            MetaValue::Bool(_) => "b",
            MetaValue::U64Be(_) | MetaValue::U64(_) => "t",
            MetaValue::U32(_) => "u",
            MetaValue::Bytes(_) => "ay",
            MetaValue::BytesList(_) => "aay",
            MetaValue::PkgList(_) => "a(sssss)",
            MetaValue::Dict(_) => "a{sv}",
            MetaValue::Other { signature, .. } => signature,
        }
    }

    /// The string of a `Str` value; None for any other type.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for MetaValue {
    /// Roughly GLib's `g_variant_print` text, for `show` and `summary --view`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaValue::Str(s) => write!(f, "'{s}'"),
            MetaValue::StrList(v) => {
                let items: Vec<String> = v.iter().map(|s| format!("'{s}'")).collect();
                write!(f, "[{}]", items.join(", "))
            }
            MetaValue::Bool(b) => write!(f, "{b}"),
            MetaValue::U64Be(v) => write!(f, "uint64 {v}"),
            MetaValue::U64(v) => write!(f, "uint64 {v}"),
            MetaValue::U32(v) => write!(f, "uint32 {v}"),
            MetaValue::Bytes(b) => write!(f, "0x{}", hex::encode(b)),
            MetaValue::BytesList(v) => {
                let items: Vec<String> =
                    v.iter().map(|b| format!("0x{}", hex::encode(b))).collect();
                write!(f, "[{}]", items.join(", "))
            }
            MetaValue::PkgList(v) => write!(f, "<{} packages>", v.len()),
            MetaValue::Dict(d) => {
                let items: Vec<String> = d.iter().map(|(k, v)| format!("'{k}': <{v}>")).collect();
                write!(f, "{{{}}}", items.join(", "))
            }
            MetaValue::Other { text, .. } => f.write_str(text),
        }
    }
}

/// Borrowed `ay` with the GVariant type `ay` (serde_bytes keeps big arrays fast).
fn bytes(b: &[u8]) -> &serde_bytes::Bytes {
    serde_bytes::Bytes::new(b)
}

impl Serialize for MetaValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // zgvariant writes a `v` from a two-field struct: its type string, then the value.
        let mut st = s.serialize_struct("Variant", 2)?;
        st.serialize_field("signature", self.signature())?;
        match self {
            MetaValue::Str(v) => st.serialize_field("value", v.as_str())?,
            MetaValue::StrList(v) => st.serialize_field("value", v)?,
            MetaValue::Bool(v) => st.serialize_field("value", v)?,
            MetaValue::U64Be(v) => st.serialize_field("value", &v.to_be())?,
            MetaValue::U64(v) => st.serialize_field("value", v)?,
            MetaValue::U32(v) => st.serialize_field("value", v)?,
            MetaValue::Bytes(v) => st.serialize_field("value", bytes(v))?,
            MetaValue::BytesList(v) => {
                let v: Vec<&serde_bytes::Bytes> = v.iter().map(|b| bytes(b)).collect();
                st.serialize_field("value", &v)?
            }
            MetaValue::PkgList(v) => st.serialize_field("value", v)?,
            MetaValue::Dict(d) => st.serialize_field("value", &ADict(d))?,
            MetaValue::Other { signature, .. } => {
                return Err(serde::ser::Error::custom(format!(
                    "cannot write a metadata value of unsupported type {signature}"
                )));
            }
        }
        st.end()
    }
}

impl Type for MetaValue {
    const SIGNATURE: &'static Signature = &Signature::Variant;
}

/// An `a{sv}` that keeps insertion order (zgvariant's `Dict` and `BTreeMap` sort keys, and
/// ostree's builder-made dicts are not sorted).
pub struct ADict<'a>(pub &'a [(String, MetaValue)]);

impl Type for ADict<'_> {
    const SIGNATURE: &'static Signature =
        <std::collections::HashMap<String, Variant<'static>> as Type>::SIGNATURE;
}

impl Serialize for ADict<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k.as_str(), v)?;
        }
        m.end()
    }
}

/// An owned, ordered `a{sv}` for deserializing (keys keep their on-disk order).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OwnedADict(pub Metadata);

impl Type for OwnedADict {
    const SIGNATURE: &'static Signature =
        <std::collections::HashMap<String, Variant<'static>> as Type>::SIGNATURE;
}

impl Serialize for OwnedADict {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ADict(&self.0).serialize(s)
    }
}

impl<'de> Deserialize<'de> for OwnedADict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OwnedADict;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an a{sv} dictionary")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Variant<'de>>()? {
                    out.push((k, from_variant(&v)));
                }
                Ok(OwnedADict(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Converts a decoded `Variant` (the content of a `v`) to a [`MetaValue`].
pub fn from_variant(v: &Variant<'_>) -> MetaValue {
    // A `v` deserializes as Variant::Variant(inner) or directly as the inner value.
    let v = match v {
        Variant::Variant(inner) => inner.as_ref(),
        other => other,
    };
    let sig = v.value_signature().to_string();
    let other = || MetaValue::Other {
        signature: sig.clone(),
        text: format!("{v:?}"),
    };
    match v {
        Variant::Str(s) => MetaValue::Str(s.as_str().to_string()),
        Variant::Bool(b) => MetaValue::Bool(*b),
        Variant::U64(n) => MetaValue::U64(*n),
        Variant::U32(n) => MetaValue::U32(*n),
        Variant::Array(a) => match sig.as_str() {
            "as" => MetaValue::StrList(
                a.inner()
                    .iter()
                    .filter_map(|e| match e {
                        Variant::Str(s) => Some(s.as_str().to_string()),
                        _ => None,
                    })
                    .collect(),
            ),
            "ay" => MetaValue::Bytes(variant_bytes(v).unwrap_or_default()),
            "aay" => MetaValue::BytesList(
                a.inner()
                    .iter()
                    .map(|e| variant_bytes(e).unwrap_or_default())
                    .collect(),
            ),
            "a(sssss)" => MetaValue::PkgList(
                a.inner()
                    .iter()
                    .filter_map(|e| match e {
                        Variant::Structure(st) => {
                            let f: Vec<String> = st
                                .fields()
                                .iter()
                                .map(|x| match x {
                                    Variant::Str(s) => s.as_str().to_string(),
                                    _ => String::new(),
                                })
                                .collect();
                            (f.len() == 5).then(|| {
                                (
                                    f[0].clone(),
                                    f[1].clone(),
                                    f[2].clone(),
                                    f[3].clone(),
                                    f[4].clone(),
                                )
                            })
                        }
                        _ => None,
                    })
                    .collect(),
            ),
            _ => other(),
        },
        Variant::Dict(d) if sig == "a{sv}" => MetaValue::Dict(
            d.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Variant::Str(s) => s.as_str().to_string(),
                        _ => String::new(),
                    };
                    (key, from_variant(v))
                })
                .collect(),
        ),
        _ => other(),
    }
}

fn variant_bytes(v: &Variant<'_>) -> Option<Vec<u8>> {
    match v {
        Variant::Array(a) => a
            .inner()
            .iter()
            .map(|e| match e {
                Variant::U8(b) => Some(*b),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// Looks up a key in ordered metadata.
pub fn lookup<'a>(meta: &'a [(String, MetaValue)], key: &str) -> Option<&'a MetaValue> {
    meta.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_all_empty_structure_is_written_as_glib_does_and_reads_back() {
        // An empty dirtree and an empty summary: one framing offset, 0.
        let dirtree: DirTreeWire = (vec![], vec![]);
        assert_eq!(to_bytes(&dirtree).unwrap(), [0]);
        let summary: SummaryWire = (vec![], OwnedADict(vec![]));
        let bytes = to_bytes(&summary).unwrap();
        assert_eq!(bytes, [0]);
        let back: SummaryWire = from_bytes(&bytes).unwrap();
        assert_eq!(back, summary);
        // Nested: the inner structure is one byte, so the outer offset is 1; an 8-aligned
        // member after it is padded.
        let nested = (
            (Vec::<String>::new(), Vec::<String>::new()),
            Vec::<u64>::new(),
        );
        assert_eq!(to_bytes(&nested).unwrap(), [0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let back: ((Vec<String>, Vec<String>), Vec<u64>) =
            from_bytes(&to_bytes(&nested).unwrap()).unwrap();
        assert_eq!(back, nested);
    }

    #[test]
    fn only_all_empty_structures_are_rewritten() {
        assert_eq!(to_bytes(&Vec::<String>::new()).unwrap(), Vec::<u8>::new());
        assert_eq!(
            to_bytes(&(vec!["x".to_string()], Vec::<String>::new())).unwrap(),
            [b'x', 0, 2, 3]
        );
    }

    type ByteBufWire = serde_bytes::ByteBuf;
    type DirTreeWire = (
        Vec<(String, ByteBufWire)>,
        Vec<(String, ByteBufWire, ByteBufWire)>,
    );
    type SummaryWire = (Vec<(String, (u64, ByteBufWire, OwnedADict))>, OwnedADict);
}
