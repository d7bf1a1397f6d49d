//! Enum columns: a row's text decodes into its `enclave-core` enum through [`Stored`], and
//! text that names no variant fails the row with an error naming the column and the value
//! (`error occurred while decoding column "tier": unknown tier `platinum``) — never a silent
//! default. Fields say so with `#[sqlx(try_from = "Stored<Tier>")]`.

use enclave_core::api_key::KeyStatus;
use enclave_core::environment::{EnvStatus, EnvType};
use enclave_core::jit::JitStatus;
use enclave_core::model::{MemberStatus, OrgStatus, Tier};
use enclave_core::policy::PolicyType;
use enclave_core::stored::UnknownValue;
use enclave_core::webhook::{DeliveryStatus, WebhookStatus};
use enclave_core::Role;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef, Postgres};
use sqlx::sqlite::{SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Sqlite, Type};

use crate::records::PolicyKind;

/// A text column holding one of `T`'s names, checked as it is decoded.
pub struct Stored<T>(T);

impl<T> Type<Sqlite> for Stored<T> {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl<T> Type<Postgres> for Stored<T> {
    fn type_info() -> PgTypeInfo {
        <String as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <String as Type<Postgres>>::compatible(ty)
    }
}

impl<'r, T: TryFrom<String, Error = UnknownValue>> Decode<'r, Sqlite> for Stored<T> {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <String as Decode<Sqlite>>::decode(value)?;
        Ok(Stored(T::try_from(text)?))
    }
}

impl<'r, T: TryFrom<String, Error = UnknownValue>> Decode<'r, Postgres> for Stored<T> {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <String as Decode<Postgres>>::decode(value)?;
        Ok(Stored(T::try_from(text)?))
    }
}

impl From<Stored<Tier>> for Tier {
    fn from(s: Stored<Tier>) -> Tier {
        s.0
    }
}

impl From<Stored<OrgStatus>> for OrgStatus {
    fn from(s: Stored<OrgStatus>) -> OrgStatus {
        s.0
    }
}

impl From<Stored<MemberStatus>> for MemberStatus {
    fn from(s: Stored<MemberStatus>) -> MemberStatus {
        s.0
    }
}

impl From<Stored<Role>> for Role {
    fn from(s: Stored<Role>) -> Role {
        s.0
    }
}

impl From<Stored<EnvType>> for EnvType {
    fn from(s: Stored<EnvType>) -> EnvType {
        s.0
    }
}

impl From<Stored<EnvStatus>> for EnvStatus {
    fn from(s: Stored<EnvStatus>) -> EnvStatus {
        s.0
    }
}

impl From<Stored<KeyStatus>> for KeyStatus {
    fn from(s: Stored<KeyStatus>) -> KeyStatus {
        s.0
    }
}

impl From<Stored<PolicyType>> for PolicyType {
    fn from(s: Stored<PolicyType>) -> PolicyType {
        s.0
    }
}

impl From<Stored<PolicyKind>> for PolicyKind {
    fn from(s: Stored<PolicyKind>) -> PolicyKind {
        s.0
    }
}

impl From<Stored<WebhookStatus>> for WebhookStatus {
    fn from(s: Stored<WebhookStatus>) -> WebhookStatus {
        s.0
    }
}

impl From<Stored<DeliveryStatus>> for DeliveryStatus {
    fn from(s: Stored<DeliveryStatus>) -> DeliveryStatus {
        s.0
    }
}

impl From<Stored<JitStatus>> for JitStatus {
    fn from(s: Stored<JitStatus>) -> JitStatus {
        s.0
    }
}
