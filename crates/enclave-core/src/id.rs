//! Prefixed, time-sortable identifiers: `org_01j9…` — a type prefix and a lowercase ULID.
//!
//! ULIDs sort by creation time, so keyset pagination over ids returns resources in creation
//! order, and ids are never reused (48 bits of milliseconds + 80 random bits).

use std::borrow::{Borrow, Cow};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// The id prefixes (docs/api-conventions.md); each resource type has exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Organization,
    User,
    Session,
    Environment,
    ApiKey,
    Policy,
    Secret,
    Webhook,
    Jit,
    Capability,
    ShadowResult,
    Query,
    Audit,
    Promotion,
    Delivery,
    Event,
    Attempt,
    Node,
}

impl Kind {
    pub const fn prefix(self) -> &'static str {
        match self {
            Kind::Organization => "org",
            Kind::User => "usr",
            Kind::Session => "ses",
            Kind::Environment => "env",
            Kind::ApiKey => "key",
            Kind::Policy => "pol",
            Kind::Secret => "sec",
            Kind::Webhook => "wh",
            Kind::Jit => "jit",
            Kind::Capability => "cap",
            Kind::ShadowResult => "shd",
            Kind::Query => "qry",
            Kind::Audit => "aud",
            Kind::Promotion => "prm",
            Kind::Delivery => "dlv",
            Kind::Event => "evt",
            Kind::Attempt => "att",
            Kind::Node => "node",
        }
    }
}

/// A fresh id of the given kind.
pub fn new_id(kind: Kind) -> String {
    format!(
        "{}_{}",
        kind.prefix(),
        Ulid::new().to_string().to_ascii_lowercase()
    )
}

/// Whether `s` is shaped like an id of `kind`. Used to answer 404 for junk path parameters
/// without asking the database.
pub fn is_id(kind: Kind, s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix(kind.prefix())
        .and_then(|r| r.strip_prefix('_'))
    else {
        return false;
    };
    rest.len() == 26
        && Ulid::from_string(&rest.to_ascii_uppercase()).is_ok()
        && rest
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// What an [`Id`] names: the resource kind whose prefix it carries, and the name of its
/// schema in the API document.
pub trait Names {
    const KIND: Kind;
    const SCHEMA: &'static str;
}

/// The kinds of resource whose ids cross the layers typed, one marker type each.
pub mod of {
    use super::{Kind, Names};

    /// An organization (`org_…`).
    pub enum Organization {}
    /// An environment (`env_…`).
    pub enum Environment {}
    /// A user (`usr_…`).
    pub enum User {}
    /// An environment API key (`key_…`).
    pub enum ApiKey {}
    /// A just-in-time access request (`jit_…`).
    pub enum JitRequest {}
    /// A server process serving the store (`node_…`).
    pub enum Node {}

    impl Names for Organization {
        const KIND: Kind = Kind::Organization;
        const SCHEMA: &'static str = "OrgId";
    }
    impl Names for Environment {
        const KIND: Kind = Kind::Environment;
        const SCHEMA: &'static str = "EnvId";
    }
    impl Names for User {
        const KIND: Kind = Kind::User;
        const SCHEMA: &'static str = "UserId";
    }
    impl Names for ApiKey {
        const KIND: Kind = Kind::ApiKey;
        const SCHEMA: &'static str = "KeyId";
    }
    impl Names for JitRequest {
        const KIND: Kind = Kind::Jit;
        const SCHEMA: &'static str = "JitId";
    }
    impl Names for Node {
        const KIND: Kind = Kind::Node;
        const SCHEMA: &'static str = "NodeId";
    }
}

/// An organization's id.
pub type OrgId = Id<of::Organization>;
/// An environment's id.
pub type EnvId = Id<of::Environment>;
/// A user's id.
pub type UserId = Id<of::User>;
/// An API key's id (the `key_…` half of a key, never its secret).
pub type KeyId = Id<of::ApiKey>;
/// A just-in-time access request's id; a live grant is named by its request's id.
pub type JitId = Id<of::JitRequest>;
/// A node's id: kept in its data directory, so a restarted node is the same node.
pub type NodeId = Id<of::Node>;

/// The id of one kind of resource: an organization's id and an environment's id are different
/// types, so passing one where the other belongs does not compile.
///
/// It reads as the text it is (`Deref<Target = str>`, `Display`, serialized as a plain
/// string). [`Id::parse`] checks text from outside (a path, a body) is shaped like an id of
/// this kind; `From<String>` takes text the server itself wrote (its store, its tokens) as is.
pub struct Id<K>(String, PhantomData<fn() -> K>);

impl<K: Names> Id<K> {
    /// A fresh id of this kind.
    pub fn generate() -> Self {
        Id(new_id(K::KIND), PhantomData)
    }

    /// `s` as an id of this kind, when it is shaped like one.
    pub fn parse(s: &str) -> Option<Self> {
        is_id(K::KIND, s).then(|| Id(s.to_owned(), PhantomData))
    }

    /// Whether the text is shaped like an id of this kind (ids taken as they were written
    /// may not be).
    pub fn is_well_formed(&self) -> bool {
        is_id(K::KIND, &self.0)
    }
}

impl<K> Id<K> {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl<K> From<String> for Id<K> {
    fn from(s: String) -> Self {
        Id(s, PhantomData)
    }
}

impl<K> From<&str> for Id<K> {
    fn from(s: &str) -> Self {
        Id(s.to_owned(), PhantomData)
    }
}

impl<K> From<&String> for Id<K> {
    fn from(s: &String) -> Self {
        Id(s.clone(), PhantomData)
    }
}

impl<K> From<&Id<K>> for Id<K> {
    fn from(id: &Id<K>) -> Self {
        id.clone()
    }
}

impl<K> From<&Id<K>> for String {
    fn from(id: &Id<K>) -> String {
        id.0.clone()
    }
}

impl<K> From<Id<K>> for String {
    fn from(id: Id<K>) -> String {
        id.0
    }
}

impl<K> Deref for Id<K> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<K> AsRef<str> for Id<K> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<K> Borrow<str> for Id<K> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<K> Clone for Id<K> {
    fn clone(&self) -> Self {
        Id(self.0.clone(), PhantomData)
    }
}

impl<K> PartialEq for Id<K> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<K> Eq for Id<K> {}

impl<K> PartialEq<str> for Id<K> {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl<K> PartialEq<&str> for Id<K> {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl<K> PartialEq<String> for Id<K> {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl<K> PartialEq<Id<K>> for str {
    fn eq(&self, other: &Id<K>) -> bool {
        self == other.0
    }
}

impl<K> PartialEq<Id<K>> for &str {
    fn eq(&self, other: &Id<K>) -> bool {
        *self == other.0
    }
}

impl<K> PartialEq<Id<K>> for String {
    fn eq(&self, other: &Id<K>) -> bool {
        *self == other.0
    }
}

impl<K> PartialOrd for Id<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for Id<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

impl<K> Hash for Id<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl<K> fmt::Debug for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<K> fmt::Display for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<K> Serialize for Id<K> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de, K> Deserialize<'de> for Id<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Id::from)
    }
}

impl<K: Names> PartialSchema for Id<K> {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(format!(
                "The id of {}: `{}_` and 26 lowercase ULID characters.",
                match K::KIND {
                    Kind::Organization => "an organization",
                    Kind::Environment => "an environment",
                    Kind::User => "a user",
                    Kind::ApiKey => "an API key",
                    Kind::Jit => "a just-in-time access request",
                    _ => "a resource",
                },
                K::KIND.prefix()
            )))
            .into()
    }
}

impl<K: Names> ToSchema for Id<K> {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed(K::SCHEMA)
    }
}

/// Ids are text columns in the store.
#[cfg(feature = "sqlx")]
mod column {
    use sqlx::encode::IsNull;
    use sqlx::error::BoxDynError;
    use sqlx::{Database, Decode, Encode, Type};

    use super::Id;

    impl<K, DB: Database> Type<DB> for Id<K>
    where
        String: Type<DB>,
    {
        fn type_info() -> DB::TypeInfo {
            <String as Type<DB>>::type_info()
        }
        fn compatible(ty: &DB::TypeInfo) -> bool {
            <String as Type<DB>>::compatible(ty)
        }
    }

    impl<'r, K, DB: Database> Decode<'r, DB> for Id<K>
    where
        String: Decode<'r, DB>,
    {
        fn decode(value: DB::ValueRef<'r>) -> Result<Self, BoxDynError> {
            <String as Decode<'r, DB>>::decode(value).map(Id::from)
        }
    }

    impl<'q, K, DB: Database> Encode<'q, DB> for Id<K>
    where
        String: Encode<'q, DB>,
    {
        fn encode_by_ref(
            &self,
            buf: &mut <DB as Database>::ArgumentBuffer<'q>,
        ) -> Result<IsNull, BoxDynError> {
            <String as Encode<'q, DB>>::encode_by_ref(&self.0, buf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_lowercase_and_sortable() {
        let a = new_id(Kind::Organization);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id(Kind::Organization);
        assert!(a.starts_with("org_") && a.len() == 30);
        assert_eq!(a, a.to_ascii_lowercase());
        assert!(a < b, "later ids sort after earlier ones");
        assert!(is_id(Kind::Organization, &a));
        assert!(!is_id(Kind::User, &a));
        assert!(!is_id(Kind::Organization, "org_nope"));
        assert!(!is_id(Kind::Organization, &a.to_ascii_uppercase()));
    }

    #[test]
    fn typed_ids_parse_their_own_kind_only() {
        let org = OrgId::generate();
        assert!(org.starts_with("org_") && org.is_well_formed());
        assert_eq!(OrgId::parse(&org), Some(org.clone()));
        assert_eq!(EnvId::parse(&org), None);
        assert_eq!(OrgId::parse("org_nope"), None);
        assert_eq!(serde_json::to_string(&org).unwrap(), format!("\"{org}\""));
        let back: OrgId = serde_json::from_str(&format!("\"{org}\"")).unwrap();
        assert_eq!(back, org);
        assert_eq!(<EnvId as ToSchema>::name(), "EnvId");
    }
}
