//! What tables an environment holds, with their columns: asked of the engine through
//! `information_schema` (which both engines answer) as an ordinary read statement, so it is
//! authorized, limited and audited like any other query.

use enclave_core::{Error, Result};
use serde_json::Value;

use crate::engine::Param;
use crate::pipeline::{Gateway, Outcome};
use crate::results::json_rows;
use crate::session::Session;

#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    pub name: String,
    /// `table` or `view`.
    pub kind: String,
    pub columns: Vec<ColumnInfo>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnInfo {
    pub name: String,
    /// The engine's type name (`INTEGER`, `VARCHAR`, `DECIMAL(10,2)`, …).
    pub data_type: String,
    pub nullable: bool,
}

/// Which tables to list.
pub enum TableFilter<'a> {
    /// Up to `limit` tables named after `after`, in name order.
    Page { after: Option<&'a str>, limit: u32 },
    /// The one table of that name (case-insensitive).
    Named(&'a str),
}

impl Gateway {
    /// Tables of the session's environment (with every column) and how many there are.
    pub async fn tables(
        &self,
        session: &mut Session,
        filter: TableFilter<'_>,
    ) -> Result<(Vec<TableInfo>, i64)> {
        let (condition, param, limit) = match filter {
            TableFilter::Page { after, limit } => (
                "table_name > $1",
                after.unwrap_or_default().to_string(),
                limit,
            ),
            TableFilter::Named(name) => ("lower(table_name) = lower($1)", name.to_string(), 1),
        };
        let sql = format!(
            "WITH page AS (SELECT table_name, table_type FROM information_schema.tables \
               WHERE table_schema = current_schema() AND {condition} \
               ORDER BY table_name LIMIT {limit}) \
             SELECT p.table_name, p.table_type, c.column_name, c.data_type, c.is_nullable, \
               (SELECT count(*) FROM information_schema.tables \
                WHERE table_schema = current_schema()) AS total \
             FROM page AS p LEFT JOIN information_schema.columns AS c \
               ON c.table_schema = current_schema() AND c.table_name = p.table_name \
             ORDER BY p.table_name, c.ordinal_position"
        );
        let statements = self.parse(session, &sql).await?;
        let outcome = self
            .execute(
                session,
                &statements[0],
                vec![Param::Text(param)],
                crate::RequestClock::start(None),
            )
            .await?;
        let Outcome::Rows(mut rows) = outcome else {
            return Err(Error::internal());
        };
        let mut tables: Vec<TableInfo> = Vec::new();
        let mut total = 0;
        while let Some(batch) = rows.next().await {
            for row in json_rows(&batch?) {
                let text = |i: usize| row[i].as_str().unwrap_or_default().to_string();
                total = row[5].as_i64().unwrap_or(0);
                let name = text(0);
                if tables.last().is_none_or(|t| t.name != name) {
                    tables.push(TableInfo {
                        name: name.clone(),
                        kind: kind_of(&text(1)).to_string(),
                        columns: vec![],
                    });
                }
                if row[2] != Value::Null {
                    let table = tables.last_mut().expect("pushed above");
                    table.columns.push(ColumnInfo {
                        name: text(2),
                        data_type: text(3),
                        nullable: text(4) == "YES",
                    });
                }
            }
        }
        Ok((tables, total))
    }
}

impl Gateway {
    /// How many tables and views the environment holds: asked of its engine directly, for
    /// the control plane (a deletion's dry run), not as a client's statement.
    pub async fn table_count(&self, env: &enclave_store::EnvRecord) -> Result<i64> {
        let mut conn = self.engines().connect(env).await?;
        let mut execution = conn
            .execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
                vec![],
                1,
            )
            .await?;
        let mut count = 0;
        while let Some(batch) = execution.batches.recv().await {
            if let Some(n) = json_rows(&batch?).first().and_then(|row| row[0].as_i64()) {
                count = n;
            }
        }
        Ok(count)
    }
}

fn kind_of(table_type: &str) -> &'static str {
    if table_type.eq_ignore_ascii_case("VIEW") {
        "view"
    } else {
        "table"
    }
}
