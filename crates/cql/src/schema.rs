//! The schema as the migrations declare it: tables, column types, keys. Parsed from the same
//! `.cql` files `chatmesh admin migrate` applies, so tests check statements against exactly
//! what a cluster gets.

use std::collections::BTreeMap;

use scylla::frame::response::result::{ColumnType, NativeType};

/// The column types the stores use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CqlType {
    BigInt,
    Int,
    Text,
    Blob,
    Boolean,
}

impl CqlType {
    fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "bigint" => CqlType::BigInt,
            "int" => CqlType::Int,
            "text" | "varchar" => CqlType::Text,
            "blob" => CqlType::Blob,
            "boolean" => CqlType::Boolean,
            _ => return None,
        })
    }

    pub fn column_type(self) -> ColumnType<'static> {
        ColumnType::Native(match self {
            CqlType::BigInt => NativeType::BigInt,
            CqlType::Int => NativeType::Int,
            CqlType::Text => NativeType::Text,
            CqlType::Blob => NativeType::Blob,
            CqlType::Boolean => NativeType::Boolean,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Asc,
    Desc,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub typ: CqlType,
    pub is_static: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    pub partition_key: Vec<String>,
    /// Clustering columns with their order.
    pub clustering: Vec<(String, Order)>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn is_key(&self, name: &str) -> bool {
        self.partition_key.iter().any(|k| k == name) || self.clustering.iter().any(|(k, _)| k == name)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    pub tables: BTreeMap<String, Table>,
}

impl Schema {
    /// Parses migrations in order; each holds `CREATE TABLE IF NOT EXISTS` statements.
    pub fn parse<'a>(migrations: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut schema = Schema::default();
        for (name, text) in migrations {
            for statement in statements(text) {
                let table = parse_table(&statement).map_err(|e| format!("{name}: {e} in `{statement}`"))?;
                if schema.tables.insert(table.name.clone(), table).is_some() {
                    return Err(format!("{name}: a table is created twice"));
                }
            }
        }
        Ok(schema)
    }

    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.get(name)
    }
}

/// The statements of a migration file: `--` comments dropped, split on `;`.
pub fn statements(text: &str) -> Vec<String> {
    let without_comments: String =
        text.lines().map(|line| line.find("--").map_or(line, |at| &line[..at])).collect::<Vec<_>>().join("\n");
    without_comments
        .split(';')
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .collect()
}

/// Splits CQL into identifiers, `?` and punctuation.
pub(crate) fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if c.is_alphanumeric() || c == '_' {
            let mut word = c.to_string();
            while let Some(&n) = chars.peek() {
                if !(n.is_alphanumeric() || n == '_') {
                    break;
                }
                word.push(n);
                chars.next();
            }
            out.push(word);
        } else if matches!(c, '<' | '>' | '!') && chars.peek() == Some(&'=') {
            chars.next();
            out.push(format!("{c}="));
        } else if c == '\'' {
            let mut quoted = String::from("'");
            for n in chars.by_ref() {
                quoted.push(n);
                if n == '\'' {
                    break;
                }
            }
            out.push(quoted);
        } else {
            out.push(c.to_string());
        }
    }
    out
}

/// CQL's reserved keywords (Cassandra and ScyllaDB): never usable as unquoted names.
const RESERVED: &[&str] = &[
    "ADD",
    "ALLOW",
    "ALTER",
    "AND",
    "APPLY",
    "ASC",
    "AUTHORIZE",
    "BATCH",
    "BEGIN",
    "BY",
    "COLUMNFAMILY",
    "CREATE",
    "DELETE",
    "DESC",
    "DESCRIBE",
    "DROP",
    "ENTRIES",
    "EXECUTE",
    "FROM",
    "FULL",
    "GRANT",
    "IF",
    "IN",
    "INDEX",
    "INFINITY",
    "INSERT",
    "INTO",
    "IS",
    "KEYSPACE",
    "LIMIT",
    "MATERIALIZED",
    "MBEAN",
    "MBEANS",
    "MODIFY",
    "NAN",
    "NORECURSIVE",
    "NOT",
    "NULL",
    "OF",
    "ON",
    "OR",
    "ORDER",
    "PRIMARY",
    "RENAME",
    "REPLACE",
    "REVOKE",
    "SCHEMA",
    "SELECT",
    "SET",
    "TABLE",
    "TO",
    "TOKEN",
    "TRUNCATE",
    "UNLOGGED",
    "UNSET",
    "UPDATE",
    "USE",
    "USING",
    "VIEW",
    "WHERE",
    "WITH",
];

fn check_name(what: &str, name: &str) -> Result<(), String> {
    if RESERVED.contains(&name.to_ascii_uppercase().as_str()) {
        return Err(format!("{what} {name} is a reserved CQL keyword"));
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err(format!("{what} {name}: lowercase letters, digits and _ only (unquoted names fold to lowercase)"));
    }
    Ok(())
}

fn parse_table(statement: &str) -> Result<Table, String> {
    let t = tokens(statement);
    let upper: Vec<String> = t.iter().map(|s| s.to_ascii_uppercase()).collect();
    if upper.len() < 7 || upper[..5] != ["CREATE", "TABLE", "IF", "NOT", "EXISTS"] {
        return Err("only CREATE TABLE IF NOT EXISTS is supported".into());
    }
    let name = t[5].clone();
    if t[6] != "(" {
        return Err("expected ( after the table name".into());
    }
    let mut i = 7;
    let mut columns = Vec::new();
    let mut partition_key = Vec::new();
    let mut clustering = Vec::new();
    while i < t.len() && t[i] != ")" {
        if upper[i] == "PRIMARY" {
            if upper.get(i + 1).map(String::as_str) != Some("KEY") || t.get(i + 2).map(String::as_str) != Some("(") {
                return Err("expected PRIMARY KEY (".into());
            }
            i += 3;
            if t[i] == "(" {
                i += 1;
                while t[i] != ")" {
                    if t[i] != "," {
                        partition_key.push(t[i].clone());
                    }
                    i += 1;
                }
                i += 1;
            } else {
                partition_key.push(t[i].clone());
                i += 1;
            }
            while t[i] != ")" {
                if t[i] != "," {
                    clustering.push((t[i].clone(), Order::Asc));
                }
                i += 1;
            }
            i += 1;
        } else {
            let col = t[i].clone();
            let typ = t.get(i + 1).and_then(|s| CqlType::parse(s)).ok_or_else(|| {
                format!("column {col}: unsupported type {:?} (bigint, int, text, blob, boolean)", t.get(i + 1))
            })?;
            i += 2;
            let is_static = upper.get(i).map(String::as_str) == Some("STATIC");
            if is_static {
                i += 1;
            }
            columns.push(Column { name: col, typ, is_static });
        }
        if t.get(i).map(String::as_str) == Some(",") {
            i += 1;
        }
    }
    // WITH CLUSTERING ORDER BY (c DESC, ...) [AND other options, ignored]
    if let Some(at) = upper.windows(3).position(|w| w == ["CLUSTERING", "ORDER", "BY"]) {
        let mut j = at + 4;
        while j < t.len() && t[j] != ")" {
            if t[j] != "," {
                let order = match upper.get(j + 1).map(String::as_str) {
                    Some("DESC") => Order::Desc,
                    Some("ASC") => Order::Asc,
                    other => return Err(format!("clustering order of {}: {other:?}", t[j])),
                };
                let slot = clustering
                    .iter_mut()
                    .find(|(c, _)| *c == t[j])
                    .ok_or_else(|| format!("clustering order names {}, not a clustering column", t[j]))?;
                slot.1 = order;
                j += 1;
            }
            j += 1;
        }
    }
    if partition_key.is_empty() {
        return Err("no primary key".into());
    }
    check_name("table", &name)?;
    for column in &columns {
        check_name("column", &column.name)?;
    }
    let table = Table { name, columns, partition_key, clustering };
    for key in table.partition_key.iter().chain(table.clustering.iter().map(|(k, _)| k)) {
        let column = table.column(key).ok_or_else(|| format!("key column {key} is not declared"))?;
        if column.is_static {
            return Err(format!("key column {key} is static"));
        }
    }
    if table.clustering.is_empty() && table.columns.iter().any(|c| c.is_static) {
        return Err("static columns need clustering columns".into());
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_keys_orders_and_statics_are_read() {
        let schema = Schema::parse([(
            "0001",
            "-- members\nCREATE TABLE IF NOT EXISTS m (\n c bigint, u bigint, name text STATIC, v int,\n \
             PRIMARY KEY ((c), u)\n) WITH CLUSTERING ORDER BY (u DESC) AND comment = 'x';\n\
             CREATE TABLE IF NOT EXISTS k (a text PRIMARY KEY_PLACEHOLDER);",
        )]);
        assert!(schema.is_err(), "an inline PRIMARY KEY is not supported");
        let schema = Schema::parse([(
            "0001",
            "CREATE TABLE IF NOT EXISTS m (c bigint, b int, u bigint, name text STATIC, PRIMARY KEY ((c, b), u)) \
             WITH CLUSTERING ORDER BY (u DESC);",
        )])
        .unwrap();
        let m = schema.table("m").unwrap();
        assert_eq!(m.partition_key, vec!["c", "b"]);
        assert_eq!(m.clustering, vec![("u".to_owned(), Order::Desc)]);
        assert!(m.column("name").unwrap().is_static);
    }

    #[test]
    fn reserved_and_case_folded_names_are_refused() {
        let err = Schema::parse([("0001", "CREATE TABLE IF NOT EXISTS t (a bigint, token text, PRIMARY KEY (a));")])
            .unwrap_err();
        assert!(err.contains("reserved"), "{err}");
        let err = Schema::parse([("0001", "CREATE TABLE IF NOT EXISTS t (a bigint, userId text, PRIMARY KEY (a));")])
            .unwrap_err();
        assert!(err.contains("lowercase"), "{err}");
    }

    #[test]
    fn unsupported_types_are_named() {
        let err = Schema::parse([("0001", "CREATE TABLE IF NOT EXISTS t (a bigint, b set<text>, PRIMARY KEY (a));")])
            .unwrap_err();
        assert!(err.contains("column b"), "{err}");
    }
}
