//! The store's executor: one SQL text (placeholders `$1`, `$2`, … on both backends), its
//! arguments as plain values, run on SQLite or on PostgreSQL.
//!
//! ```ignore
//! let rec: OrgRecord = db::query_as("SELECT … FROM orgs WHERE id = $1")
//!     .bind(org_id)
//!     .fetch_one(&mut tx)
//!     .await?;
//! ```
//!
//! A statement runs on a write transaction ([`Tx`]) or on a pool for reads ([`On`], from
//! `Store::reader`). Rows decode with `sqlx::FromRow` on either backend ([`Row`]); single
//! values with [`Value`].

use std::borrow::Cow;
use std::marker::PhantomData;

use enclave_core::id::Id;
use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::postgres::{PgArguments, PgConnection, PgPool, PgRow, Postgres};
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqlitePool, SqliteRow};
use sqlx::types::Json;
use sqlx::{Arguments, Decode, FromRow, Sqlite, Transaction, Type};

/// A row type both backends can decode.
pub(crate) trait Row:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}
impl<T> Row for T where T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{}

/// A single column value both backends can decode.
pub(crate) trait Value:
    for<'r> Decode<'r, Sqlite>
    + Type<Sqlite>
    + for<'r> Decode<'r, Postgres>
    + Type<Postgres>
    + Send
    + Unpin
{
}
impl<T> Value for T where
    T: for<'r> Decode<'r, Sqlite>
        + Type<Sqlite>
        + for<'r> Decode<'r, Postgres>
        + Type<Postgres>
        + Send
        + Unpin
{
}

/// A write transaction on either backend.
pub(crate) enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }
}

/// Where a statement runs: a transaction's connection or a pool.
pub(crate) enum On<'e> {
    SqliteConn(&'e mut SqliteConnection),
    SqlitePool(&'e SqlitePool),
    PgConn(&'e mut PgConnection),
    PgPool(&'e PgPool),
}

impl<'e> From<&'e mut Tx> for On<'e> {
    fn from(tx: &'e mut Tx) -> Self {
        match tx {
            Tx::Sqlite(tx) => On::SqliteConn(tx),
            Tx::Postgres(tx) => On::PgConn(tx),
        }
    }
}

/// One bound argument. Each keeps its SQL type when `None` (PostgreSQL types its NULLs).
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(Option<String>),
    Int(Option<i64>),
    Int4(Option<i32>),
    Float(Option<f64>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
    /// Serialized once, as the value's own `Serialize` writes it (field order kept).
    Json(Option<Box<RawValue>>),
}

impl Arg {
    fn add_sqlite(self, args: &mut SqliteArguments<'_>) -> Result<(), sqlx::Error> {
        match self {
            Arg::Text(v) => args.add(v),
            Arg::Int(v) => args.add(v),
            Arg::Int4(v) => args.add(v),
            Arg::Float(v) => args.add(v),
            Arg::Bool(v) => args.add(v),
            Arg::Bytes(v) => args.add(v),
            Arg::Json(v) => args.add(v.map(Json)),
        }
        .map_err(sqlx::Error::Encode)
    }

    fn add_pg(self, args: &mut PgArguments) -> Result<(), sqlx::Error> {
        match self {
            Arg::Text(v) => args.add(v),
            Arg::Int(v) => args.add(v),
            Arg::Int4(v) => args.add(v),
            Arg::Float(v) => args.add(v),
            Arg::Bool(v) => args.add(v),
            Arg::Bytes(v) => args.add(v),
            Arg::Json(v) => args.add(v.map(Json)),
        }
        .map_err(sqlx::Error::Encode)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(Some(v.to_owned()))
    }
}

impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(Some(v))
    }
}

impl From<&String> for Arg {
    fn from(v: &String) -> Arg {
        Arg::Text(Some(v.clone()))
    }
}

impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Arg {
        Arg::Text(v.map(str::to_owned))
    }
}

impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Arg {
        Arg::Text(v)
    }
}

impl From<Option<&String>> for Arg {
    fn from(v: Option<&String>) -> Arg {
        Arg::Text(v.cloned())
    }
}

impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Arg {
        Arg::Text(v.clone())
    }
}

impl<K> From<&Id<K>> for Arg {
    fn from(v: &Id<K>) -> Self {
        Arg::Text(Some(v.to_string()))
    }
}

impl<K> From<Id<K>> for Arg {
    fn from(v: Id<K>) -> Self {
        Arg::Text(Some(v.into_string()))
    }
}

impl<K> From<Option<&Id<K>>> for Arg {
    fn from(v: Option<&Id<K>>) -> Self {
        Arg::Text(v.map(|id| id.to_string()))
    }
}

impl<K> From<Option<Id<K>>> for Arg {
    fn from(v: Option<Id<K>>) -> Self {
        Arg::Text(v.map(Id::into_string))
    }
}

impl<K> From<&Option<Id<K>>> for Arg {
    fn from(v: &Option<Id<K>>) -> Self {
        Arg::Text(v.as_ref().map(|id| id.to_string()))
    }
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(Some(v))
    }
}

impl From<&i64> for Arg {
    fn from(v: &i64) -> Arg {
        Arg::Int(Some(*v))
    }
}

impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Arg {
        Arg::Int(v)
    }
}

impl From<i32> for Arg {
    fn from(v: i32) -> Arg {
        Arg::Int4(Some(v))
    }
}

impl From<Option<i32>> for Arg {
    fn from(v: Option<i32>) -> Arg {
        Arg::Int4(v)
    }
}

impl From<f64> for Arg {
    fn from(v: f64) -> Arg {
        Arg::Float(Some(v))
    }
}

impl From<Option<f64>> for Arg {
    fn from(v: Option<f64>) -> Arg {
        Arg::Float(v)
    }
}

impl From<bool> for Arg {
    fn from(v: bool) -> Arg {
        Arg::Bool(Some(v))
    }
}

impl From<Option<bool>> for Arg {
    fn from(v: Option<bool>) -> Arg {
        Arg::Bool(v)
    }
}

impl From<Vec<u8>> for Arg {
    fn from(v: Vec<u8>) -> Arg {
        Arg::Bytes(Some(v))
    }
}

impl From<&Vec<u8>> for Arg {
    fn from(v: &Vec<u8>) -> Arg {
        Arg::Bytes(Some(v.clone()))
    }
}

impl From<&[u8]> for Arg {
    fn from(v: &[u8]) -> Arg {
        Arg::Bytes(Some(v.to_vec()))
    }
}

impl From<Option<Vec<u8>>> for Arg {
    fn from(v: Option<Vec<u8>>) -> Arg {
        Arg::Bytes(v)
    }
}

impl<T: Serialize> From<Json<T>> for Arg {
    fn from(v: Json<T>) -> Arg {
        Arg::Json(Some(raw_json(&v.0)))
    }
}

impl<T: Serialize> From<Option<Json<T>>> for Arg {
    fn from(v: Option<Json<T>>) -> Arg {
        Arg::Json(v.map(|v| raw_json(&v.0)))
    }
}

fn raw_json<T: Serialize>(v: &T) -> Box<RawValue> {
    // Serializing plain data (maps with string keys, structs) cannot fail.
    serde_json::value::to_raw_value(v)
        .unwrap_or_else(|_| RawValue::from_string("null".to_owned()).expect("null is JSON"))
}

/// A statement and its arguments.
struct Bound<'q> {
    sql: Cow<'q, str>,
    args: Vec<Arg>,
}

fn sqlite_args(args: Vec<Arg>) -> Result<SqliteArguments<'static>, sqlx::Error> {
    let mut out = SqliteArguments::default();
    for a in args {
        a.add_sqlite(&mut out)?;
    }
    Ok(out)
}

fn pg_args(args: Vec<Arg>) -> Result<PgArguments, sqlx::Error> {
    let mut out = PgArguments::default();
    for a in args {
        a.add_pg(&mut out)?;
    }
    Ok(out)
}

/// What `execute` reports.
pub(crate) struct Done {
    rows: u64,
}

impl Done {
    pub(crate) fn rows_affected(&self) -> u64 {
        self.rows
    }
}

/// A statement whose rows are not read.
pub(crate) struct Query<'q>(Bound<'q>);

/// A statement whose rows decode into `T`.
pub(crate) struct QueryAs<'q, T>(Bound<'q>, PhantomData<T>);

/// A statement whose first column decodes into `T`.
pub(crate) struct QueryScalar<'q, T>(QueryAs<'q, (T,)>);

pub(crate) fn query<'q>(sql: impl Into<Cow<'q, str>>) -> Query<'q> {
    Query(Bound {
        sql: sql.into(),
        args: Vec::new(),
    })
}

pub(crate) fn query_as<'q, T: Row>(sql: impl Into<Cow<'q, str>>) -> QueryAs<'q, T> {
    QueryAs(
        Bound {
            sql: sql.into(),
            args: Vec::new(),
        },
        PhantomData,
    )
}

pub(crate) fn query_scalar<'q, T: Value>(sql: impl Into<Cow<'q, str>>) -> QueryScalar<'q, T> {
    QueryScalar(QueryAs(
        Bound {
            sql: sql.into(),
            args: Vec::new(),
        },
        PhantomData,
    ))
}

impl<'q> Query<'q> {
    pub(crate) fn bind(mut self, arg: impl Into<Arg>) -> Self {
        self.0.args.push(arg.into());
        self
    }

    pub(crate) async fn execute<'e>(self, on: impl Into<On<'e>>) -> Result<Done, sqlx::Error> {
        let Bound { sql, args } = self.0;
        let rows = match on.into() {
            On::SqliteConn(c) => sqlx::query_with(&sql, sqlite_args(args)?)
                .execute(c)
                .await?
                .rows_affected(),
            On::SqlitePool(p) => sqlx::query_with(&sql, sqlite_args(args)?)
                .execute(p)
                .await?
                .rows_affected(),
            On::PgConn(c) => sqlx::query_with(&sql, pg_args(args)?)
                .execute(c)
                .await?
                .rows_affected(),
            On::PgPool(p) => sqlx::query_with(&sql, pg_args(args)?)
                .execute(p)
                .await?
                .rows_affected(),
        };
        Ok(Done { rows })
    }
}

impl<'q, T: Row> QueryAs<'q, T> {
    pub(crate) fn bind(mut self, arg: impl Into<Arg>) -> Self {
        self.0.args.push(arg.into());
        self
    }

    /// Binds `args` in order (a filter shared by a page and its count).
    pub(crate) fn bind_all(mut self, args: &[Arg]) -> Self {
        self.0.args.extend_from_slice(args);
        self
    }

    pub(crate) async fn fetch_all<'e>(self, on: impl Into<On<'e>>) -> Result<Vec<T>, sqlx::Error> {
        let Bound { sql, args } = self.0;
        match on.into() {
            On::SqliteConn(c) => {
                sqlx::query_as_with(&sql, sqlite_args(args)?)
                    .fetch_all(c)
                    .await
            }
            On::SqlitePool(p) => {
                sqlx::query_as_with(&sql, sqlite_args(args)?)
                    .fetch_all(p)
                    .await
            }
            On::PgConn(c) => sqlx::query_as_with(&sql, pg_args(args)?).fetch_all(c).await,
            On::PgPool(p) => sqlx::query_as_with(&sql, pg_args(args)?).fetch_all(p).await,
        }
    }

    pub(crate) async fn fetch_optional<'e>(
        self,
        on: impl Into<On<'e>>,
    ) -> Result<Option<T>, sqlx::Error> {
        let Bound { sql, args } = self.0;
        match on.into() {
            On::SqliteConn(c) => {
                sqlx::query_as_with(&sql, sqlite_args(args)?)
                    .fetch_optional(c)
                    .await
            }
            On::SqlitePool(p) => {
                sqlx::query_as_with(&sql, sqlite_args(args)?)
                    .fetch_optional(p)
                    .await
            }
            On::PgConn(c) => {
                sqlx::query_as_with(&sql, pg_args(args)?)
                    .fetch_optional(c)
                    .await
            }
            On::PgPool(p) => {
                sqlx::query_as_with(&sql, pg_args(args)?)
                    .fetch_optional(p)
                    .await
            }
        }
    }

    pub(crate) async fn fetch_one<'e>(self, on: impl Into<On<'e>>) -> Result<T, sqlx::Error> {
        self.fetch_optional(on)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }
}

impl<'q, T: Value> QueryScalar<'q, T> {
    pub(crate) fn bind(self, arg: impl Into<Arg>) -> Self {
        QueryScalar(self.0.bind(arg))
    }

    /// Binds `args` in order (a filter shared by a page and its count).
    pub(crate) fn bind_all(self, args: &[Arg]) -> Self {
        QueryScalar(self.0.bind_all(args))
    }

    pub(crate) async fn fetch_all<'e>(self, on: impl Into<On<'e>>) -> Result<Vec<T>, sqlx::Error> {
        Ok(self
            .0
            .fetch_all(on)
            .await?
            .into_iter()
            .map(|(v,)| v)
            .collect())
    }

    pub(crate) async fn fetch_optional<'e>(
        self,
        on: impl Into<On<'e>>,
    ) -> Result<Option<T>, sqlx::Error> {
        Ok(self.0.fetch_optional(on).await?.map(|(v,)| v))
    }

    pub(crate) async fn fetch_one<'e>(self, on: impl Into<On<'e>>) -> Result<T, sqlx::Error> {
        self.fetch_optional(on)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }
}
