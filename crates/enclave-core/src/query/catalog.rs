//! The relations of an environment as the policy rewrite needs them: which names resolve to
//! which table or view, each one's columns (to expand `SELECT *` and type the masks), and what
//! each view reads (so a view cannot be a way around a table's masks or row filters).

use std::collections::{BTreeSet, HashMap};

use crate::policy::table::TableRef;

/// Schemas a name without a schema resolves in: DuckDB's and PostgreSQL's default.
pub const DEFAULT_SCHEMAS: [&str; 2] = ["main", "public"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    Table,
    View,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// As the engine spells it (case kept).
    pub name: String,
    /// The engine's type name (`VARCHAR`, `character varying`, `INTEGER`, …).
    pub data_type: String,
}

impl Column {
    /// Whether the column holds text (a `full` mask shows `***` rather than NULL).
    pub fn is_text(&self) -> bool {
        let t = self.data_type.to_ascii_lowercase();
        t.contains("char") || t.contains("text") || matches!(t.as_str(), "string" | "name")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub schema: String,
    pub name: String,
    pub kind: RelationKind,
    /// In ordinal order.
    pub columns: Vec<Column>,
    /// For a view, the relations its definition names (as written there); `None` when the
    /// definition could not be read, which is treated as reading everything.
    pub reads: Option<Vec<String>>,
}

impl Relation {
    /// The name policies match this relation by: without a schema when it is in a default
    /// schema (so rules naming `t`, `main.t` or `public.t` all apply).
    pub fn table_ref(&self) -> TableRef {
        let schema = self.schema.to_ascii_lowercase();
        TableRef {
            schema: (!DEFAULT_SCHEMAS.contains(&schema.as_str())).then_some(schema),
            name: self.name.to_ascii_lowercase(),
        }
    }
}

/// The relations of one environment, looked up case-insensitively.
#[derive(Debug, Default)]
pub struct Catalog {
    relations: HashMap<(String, String), Relation>,
    schemas: BTreeSet<String>,
}

/// How far view definitions are followed (views of views of …).
const MAX_VIEW_DEPTH: usize = 16;

impl Catalog {
    pub fn new(relations: impl IntoIterator<Item = Relation>) -> Catalog {
        let mut catalog = Catalog::default();
        for r in relations {
            catalog.schemas.insert(r.schema.to_ascii_lowercase());
            catalog.relations.insert(
                (r.schema.to_ascii_lowercase(), r.name.to_ascii_lowercase()),
                r,
            );
        }
        catalog
    }

    fn get(&self, schema: &str, name: &str) -> Option<&Relation> {
        self.relations
            .get(&(schema.to_ascii_lowercase(), name.to_ascii_lowercase()))
    }

    /// The relation a name resolves to, from its parts as written (`t`, `schema.t`,
    /// `database.t`, `database.schema.t`).
    pub fn resolve(&self, parts: &[String]) -> Option<&Relation> {
        match parts {
            [name] => DEFAULT_SCHEMAS.iter().find_map(|s| self.get(s, name)),
            [schema, name] => self.get(schema, name).or_else(|| {
                // DuckDB reads `x.t` as database `x`, schema `main`, when `x` is no schema.
                (!self.schemas.contains(&schema.to_ascii_lowercase()))
                    .then(|| DEFAULT_SCHEMAS.iter().find_map(|s| self.get(s, name)))
                    .flatten()
            }),
            [_, schema, name] => self.get(schema, name),
            _ => None,
        }
    }

    /// The names policies match a reference by: the relation's own when it resolves;
    /// otherwise every reading of the name as written (a two-part name may be
    /// `schema.table` or `database.table`).
    pub fn refs(&self, parts: &[String]) -> Vec<TableRef> {
        if let Some(r) = self.resolve(parts) {
            return vec![r.table_ref()];
        }
        text_refs(parts)
    }

    /// Every relation `tables` (names as a statement wrote them) read: the names' own
    /// relations and, through views, what those read, transitively.
    pub fn expand(&self, tables: &[String]) -> Vec<TableRef> {
        let mut out: BTreeSet<TableRef> = BTreeSet::new();
        let mut queue: Vec<(Vec<String>, usize)> = tables.iter().map(|t| (split(t), 0)).collect();
        while let Some((parts, depth)) = queue.pop() {
            out.extend(self.refs(&parts));
            if let Some(Relation {
                kind: RelationKind::View,
                reads: Some(reads),
                ..
            }) = self.resolve(&parts)
            {
                if depth < MAX_VIEW_DEPTH {
                    queue.extend(reads.iter().map(|t| (split(t), depth + 1)));
                }
            }
        }
        out.into_iter().collect()
    }

    /// Whether a view reads (transitively) a relation `covered` says yes to; a view whose
    /// definition is unknown, or nested too deep to follow, is assumed to.
    pub fn view_reads(&self, view: &Relation, covered: &dyn Fn(&TableRef) -> bool) -> bool {
        let mut queue = vec![(view, 0usize)];
        while let Some((v, depth)) = queue.pop() {
            let Some(reads) = &v.reads else { return true };
            if depth >= MAX_VIEW_DEPTH {
                return true;
            }
            for t in reads {
                let parts = split(t);
                if self.refs(&parts).iter().any(covered) {
                    return true;
                }
                if let Some(inner) = self.resolve(&parts) {
                    if inner.kind == RelationKind::View {
                        queue.push((inner, depth + 1));
                    }
                }
            }
        }
        false
    }
}

/// A dotted name (as `query::parse` lists tables) into its parts.
pub fn split(name: &str) -> Vec<String> {
    name.split('.').map(str::to_string).collect()
}

/// The readings of a name no catalog knows: `t`; `schema.t` and `t` (the first part may be a
/// database); `database.schema.t`.
pub fn text_refs(parts: &[String]) -> Vec<TableRef> {
    let lower = |s: &String| s.to_ascii_lowercase();
    let plain = |name: &String| TableRef {
        schema: None,
        name: lower(name),
    };
    let schema_of = |schema: &String, name: &String| {
        let s = lower(schema);
        if DEFAULT_SCHEMAS.contains(&s.as_str()) {
            plain(name)
        } else {
            TableRef {
                schema: Some(s),
                name: lower(name),
            }
        }
    };
    match parts {
        [name] => vec![plain(name)],
        [schema, name] => {
            let mut v = vec![schema_of(schema, name), plain(name)];
            v.dedup();
            v
        }
        [.., schema, name] => vec![schema_of(schema, name)],
        [] => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(schema: &str, name: &str) -> Relation {
        Relation {
            schema: schema.into(),
            name: name.into(),
            kind: RelationKind::Table,
            columns: vec![],
            reads: None,
        }
    }

    fn view(name: &str, reads: Option<&[&str]>) -> Relation {
        Relation {
            kind: RelationKind::View,
            reads: reads.map(|r| r.iter().map(|s| s.to_string()).collect()),
            ..table("main", name)
        }
    }

    fn p(s: &str) -> Vec<String> {
        split(s)
    }

    #[test]
    fn names_resolve_like_the_engines() {
        let c = Catalog::new([
            table("main", "Customers"),
            table("crm", "orders"),
            view("v", Some(&["customers"])),
        ]);
        assert_eq!(c.resolve(&p("customers")).unwrap().name, "Customers");
        assert_eq!(c.resolve(&p("CUSTOMERS")).unwrap().name, "Customers");
        assert!(c.resolve(&p("main.customers")).is_some());
        // `env.customers`: a database name before the table.
        assert!(c.resolve(&p("env_db.customers")).is_some());
        assert!(c.resolve(&p("env_db.main.customers")).is_some());
        assert!(c.resolve(&p("crm.orders")).is_some());
        assert!(c.resolve(&p("orders")).is_none());
        assert!(c.resolve(&p("crm.customers")).is_none());
        assert_eq!(
            c.refs(&p("customers")),
            vec![TableRef {
                schema: None,
                name: "customers".into()
            }]
        );
        assert_eq!(c.refs(&p("crm.orders"))[0].display(), "crm.orders");
        // Unknown two-part names are read both ways.
        assert_eq!(
            c.refs(&p("x.y"))
                .iter()
                .map(TableRef::display)
                .collect::<Vec<_>>(),
            vec!["x.y", "y"]
        );
    }

    #[test]
    fn views_are_followed() {
        let c = Catalog::new([
            table("main", "customers"),
            view("v", Some(&["customers"])),
            view("w", Some(&["v"])),
            view("opaque", None),
            view("plain", Some(&["other"])),
        ]);
        let names: Vec<String> = c
            .expand(&["w".into()])
            .iter()
            .map(TableRef::display)
            .collect();
        assert_eq!(names, vec!["customers", "v", "w"]);
        let customers = |t: &TableRef| t.name == "customers";
        assert!(c.view_reads(c.resolve(&p("w")).unwrap(), &customers));
        assert!(c.view_reads(c.resolve(&p("opaque")).unwrap(), &customers));
        assert!(!c.view_reads(c.resolve(&p("plain")).unwrap(), &customers));
        // A cycle (views redefined in a loop) ends at the depth limit, as covered.
        let looped = Catalog::new([view("a", Some(&["b"])), view("b", Some(&["a"]))]);
        assert!(looped.view_reads(looped.resolve(&p("a")).unwrap(), &customers));
        assert_eq!(looped.expand(&["a".into()]).len(), 2);
    }
}
