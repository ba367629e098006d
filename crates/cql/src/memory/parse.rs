//! Statement parsing, checked against the schema.

use std::{cmp::Ordering, sync::Arc};

use super::{MemoryCql, schema_error};
use crate::{
    CqlError, Statement,
    schema::{CqlType, Order, Schema, Table, tokens},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn parse(token: &str) -> Option<Op> {
        Some(match token {
            "=" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            _ => return None,
        })
    }

    pub(super) fn holds(self, ord: Ordering) -> bool {
        match self {
            Op::Eq => ord == Ordering::Equal,
            Op::Ne => ord != Ordering::Equal,
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
        }
    }
}

/// `column op ?`, binding the marker at `marker`.
#[derive(Debug, Clone)]
pub(super) struct Cond {
    pub(super) column: String,
    pub(super) op: Op,
    pub(super) marker: usize,
}

#[derive(Debug, Clone)]
pub(super) enum Condition {
    None,
    NotExists,
    Exists,
    Columns(Vec<Cond>),
}

#[derive(Debug, Clone)]
pub(super) enum Kind {
    Select { columns: Vec<String>, order: Option<Order>, limit: Option<usize> },
    Insert { columns: Vec<(String, usize)> },
    Update { set: Vec<(String, usize)> },
    Delete,
}

/// A statement parsed and checked against the schema.
#[derive(Debug, Clone)]
pub(super) struct Parsed {
    pub(super) table: String,
    pub(super) kind: Kind,
    /// Key restrictions (for INSERT: the key columns among the inserted ones).
    pub(super) restrictions: Vec<Cond>,
    pub(super) condition: Condition,
    /// The marker of `USING TIMESTAMP ?`.
    pub(super) timestamp: Option<usize>,
    /// The type each marker binds, in order.
    pub(super) markers: Vec<CqlType>,
}

impl Parsed {
    pub(super) fn condition_present(&self) -> bool {
        !matches!(self.condition, Condition::None)
    }
}

impl MemoryCql {
    pub(super) fn parse(&self, stmt: &'static Statement) -> Result<Arc<Parsed>, CqlError> {
        let mut cache = self.parsed.lock().expect("statement cache");
        if let Some(p) = cache.get(stmt.name) {
            return Ok(p.clone());
        }
        let parsed = Arc::new(parse(&self.schema, stmt.cql).map_err(|e| schema_error(stmt.name, e))?);
        if parsed.condition_present() != stmt.is_conditional() {
            return Err(schema_error(stmt.name, "the IF clause and the statement's flags disagree"));
        }
        cache.insert(stmt.name, parsed.clone());
        Ok(parsed)
    }
}

/// Parses a statement of the subset and checks it against the schema.
pub(super) fn parse(schema: &Schema, cql: &str) -> Result<Parsed, String> {
    let t = tokens(cql);
    let up: Vec<String> = t.iter().map(|s| s.to_ascii_uppercase()).collect();
    let mut p = Parser { t: &t, up: &up, i: 0, markers: 0 };
    let mut using = Using::default();
    let (table_name, kind, restrictions, condition) = match p.next_up().as_str() {
        "SELECT" => {
            let mut columns = Vec::new();
            loop {
                columns.push(p.ident()?);
                if !p.eat(",") {
                    break;
                }
            }
            p.expect("FROM")?;
            let table = p.table()?;
            p.expect("WHERE")?;
            let restrictions = p.conditions(&["ORDER", "LIMIT"])?;
            let mut order = None;
            if p.eat("ORDER") {
                p.expect("BY")?;
                let _column = p.ident()?;
                order = Some(match p.next_up().as_str() {
                    "ASC" => Order::Asc,
                    "DESC" => Order::Desc,
                    other => return Err(format!("ORDER BY ... {other}")),
                });
            }
            let limit = if p.eat("LIMIT") { Some(p.marker()?) } else { None };
            (table, Kind::Select { columns, order, limit }, restrictions, Condition::None)
        }
        "INSERT" => {
            p.expect("INTO")?;
            let table = p.table()?;
            p.expect("(")?;
            let mut names = Vec::new();
            loop {
                names.push(p.ident()?);
                if !p.eat(",") {
                    break;
                }
            }
            p.expect(")")?;
            p.expect("VALUES")?;
            p.expect("(")?;
            let mut columns = Vec::new();
            for (n, name) in names.iter().enumerate() {
                if n > 0 {
                    p.expect(",")?;
                }
                columns.push((name.clone(), p.marker()?));
            }
            p.expect(")")?;
            let condition = if p.eat("IF") {
                p.expect("NOT")?;
                p.expect("EXISTS")?;
                Condition::NotExists
            } else {
                Condition::None
            };
            using = p.using(true)?;
            let restrictions =
                columns.iter().map(|(c, m)| Cond { column: c.clone(), op: Op::Eq, marker: *m }).collect();
            (table, Kind::Insert { columns }, restrictions, condition)
        }
        "UPDATE" => {
            let table = p.table()?;
            using = p.using(true)?;
            p.expect("SET")?;
            let mut set = Vec::new();
            loop {
                let column = p.ident()?;
                p.expect("=")?;
                set.push((column, p.marker()?));
                if !p.eat(",") {
                    break;
                }
            }
            p.expect("WHERE")?;
            let restrictions = p.conditions(&["IF"])?;
            let condition = p.if_clause()?;
            (table, Kind::Update { set }, restrictions, condition)
        }
        "DELETE" => {
            p.expect("FROM")?;
            let table = p.table()?;
            using = p.using(false)?;
            p.expect("WHERE")?;
            let restrictions = p.conditions(&["IF"])?;
            let condition = p.if_clause()?;
            (table, Kind::Delete, restrictions, condition)
        }
        other => return Err(format!("unsupported statement {other}")),
    };
    if p.i != t.len() {
        return Err(format!("unexpected `{}`", t[p.i..].join(" ")));
    }
    let table = schema.table(&table_name).ok_or_else(|| format!("no table {table_name} in the migrations"))?;
    let mut markers = vec![None; p.markers];
    let column_type =
        |name: &str| table.column(name).map(|c| c.typ).ok_or_else(|| format!("{}: no column {name}", table.name));
    for c in &restrictions {
        markers[c.marker] = Some(column_type(&c.column)?);
    }
    check_key(table, &kind, &restrictions)?;
    match &kind {
        Kind::Select { columns, limit, .. } => {
            for c in columns {
                column_type(c)?;
            }
            if let Some(m) = limit {
                markers[*m] = Some(CqlType::Int);
            }
        }
        Kind::Insert { columns } | Kind::Update { set: columns } => {
            for (c, m) in columns {
                markers[*m] = Some(column_type(c)?);
            }
            if let Kind::Update { set } = &kind
                && let Some((c, _)) = set.iter().find(|(c, _)| table.is_key(c))
            {
                return Err(format!("UPDATE sets key column {c}"));
            }
        }
        Kind::Delete => {}
    }
    if let Condition::Columns(conds) = &condition {
        for c in conds {
            if table.is_key(&c.column) {
                return Err(format!("IF on key column {}", c.column));
            }
            markers[c.marker] = Some(column_type(&c.column)?);
        }
    }
    if let Some(m) = using.timestamp {
        if !matches!(condition, Condition::None) {
            // as ScyllaDB refuses it: a lightweight transaction is stamped by its Paxos ballot
            return Err("a lightweight transaction cannot carry USING TIMESTAMP (its ballot is its timestamp)".into());
        }
        markers[m] = Some(CqlType::BigInt);
    }
    if let Some(m) = using.ttl {
        markers[m] = Some(CqlType::Int);
    }
    let markers = markers.into_iter().collect::<Option<Vec<_>>>().ok_or("a marker binds nothing known")?;
    Ok(Parsed { table: table_name, kind, restrictions, condition, timestamp: using.timestamp, markers })
}

/// The key restrictions a statement kind needs: the whole partition key by `=`; then a
/// clustering prefix by `=` and at most one range, on the next column.
fn check_key(table: &Table, kind: &Kind, restrictions: &[Cond]) -> Result<(), String> {
    for c in restrictions {
        if !table.is_key(&c.column) && !matches!(kind, Kind::Insert { .. }) {
            return Err(format!("WHERE on {}, not a key column", c.column));
        }
    }
    for k in &table.partition_key {
        if !restrictions.iter().any(|c| &c.column == k && c.op == Op::Eq) {
            return Err(format!("the partition key column {k} is not restricted by ="));
        }
    }
    let mut prefix = 0;
    for (k, _) in &table.clustering {
        if restrictions.iter().any(|c| &c.column == k && c.op == Op::Eq) {
            prefix += 1;
        } else {
            break;
        }
    }
    for (at, (k, _)) in table.clustering.iter().enumerate() {
        let restricted = restrictions.iter().filter(|c| &c.column == k).collect::<Vec<_>>();
        if at > prefix && !restricted.is_empty() {
            return Err(format!("clustering column {k} restricted after an unrestricted or ranged one"));
        }
        if at == prefix && restricted.iter().any(|c| c.op == Op::Ne) {
            return Err(format!("!= on clustering column {k}"));
        }
    }
    let whole_row = prefix == table.clustering.len();
    match kind {
        Kind::Insert { columns } => {
            if !whole_row {
                let sets_only_statics =
                    columns.iter().all(|(c, _)| table.is_key(c) || table.column(c).is_some_and(|c| c.is_static));
                if !(prefix == 0 && sets_only_statics) {
                    return Err("INSERT without the whole primary key".into());
                }
            }
        }
        Kind::Update { set } => {
            let ranged = restrictions.len() > table.partition_key.len() + prefix;
            let only_statics = prefix == 0 && set.iter().all(|(c, _)| table.column(c).is_some_and(|c| c.is_static));
            if ranged || !(whole_row || only_statics) {
                return Err("UPDATE needs the whole primary key (or only the partition key, for static columns)".into());
            }
        }
        Kind::Select { .. } | Kind::Delete => {}
    }
    Ok(())
}

/// The markers of `USING TTL ? AND TIMESTAMP ?`.
#[derive(Debug, Default)]
struct Using {
    pub(super) ttl: Option<usize>,
    pub(super) timestamp: Option<usize>,
}

struct Parser<'a> {
    pub(super) t: &'a [String],
    pub(super) up: &'a [String],
    pub(super) i: usize,
    pub(super) markers: usize,
}

impl Parser<'_> {
    fn next_up(&mut self) -> String {
        let s = self.up.get(self.i).cloned().unwrap_or_default();
        self.i += 1;
        s
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.up.get(self.i).map(String::as_str) == Some(word) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, word: &str) -> Result<(), String> {
        if self.eat(word) {
            Ok(())
        } else {
            Err(format!("expected {word} at `{}`", self.t.get(self.i).map_or("<end>", String::as_str)))
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        match self.t.get(self.i) {
            Some(s) if s.chars().all(|c| c.is_alphanumeric() || c == '_') && !s.is_empty() => {
                self.i += 1;
                Ok(s.clone())
            }
            other => Err(format!("expected a name, found {other:?} (only named columns, no literals)")),
        }
    }

    /// A table name, `table` or `keyspace.table` (ScyllaDB's own tables, such as
    /// `system_schema.columns`, are named with their keyspace).
    fn table(&mut self) -> Result<String, String> {
        let name = self.ident()?;
        if self.eat(".") { Ok(format!("{name}.{}", self.ident()?)) } else { Ok(name) }
    }

    fn marker(&mut self) -> Result<usize, String> {
        if self.t.get(self.i).map(String::as_str) == Some("?") {
            self.i += 1;
            self.markers += 1;
            Ok(self.markers - 1)
        } else {
            Err(format!("expected ?, found {:?} (values are bound, never literal)", self.t.get(self.i)))
        }
    }

    /// `[USING TTL ? | TIMESTAMP ? [AND ...]]` (no TTL in a DELETE).
    fn using(&mut self, ttl_allowed: bool) -> Result<Using, String> {
        let mut using = Using::default();
        if !self.eat("USING") {
            return Ok(using);
        }
        loop {
            let slot = match self.next_up().as_str() {
                "TTL" if ttl_allowed => &mut using.ttl,
                "TIMESTAMP" => &mut using.timestamp,
                other => return Err(format!("USING {other}: TTL ? or TIMESTAMP ? (no TTL in a DELETE)")),
            };
            if slot.is_some() {
                return Err("USING names an option twice".into());
            }
            *slot = Some(self.marker()?);
            if !self.eat("AND") {
                return Ok(using);
            }
        }
    }

    /// `c op ? AND c op ? ...` until one of `stop` or the end.
    fn conditions(&mut self, stop: &[&str]) -> Result<Vec<Cond>, String> {
        let mut out = Vec::new();
        loop {
            let column = self.ident()?;
            let op = self
                .t
                .get(self.i)
                .and_then(|s| Op::parse(s))
                .ok_or_else(|| format!("expected an operator after {column}"))?;
            self.i += 1;
            out.push(Cond { column, op, marker: self.marker()? });
            if self.i >= self.t.len() || stop.contains(&self.up[self.i].as_str()) {
                return Ok(out);
            }
            self.expect("AND")?;
        }
    }

    fn if_clause(&mut self) -> Result<Condition, String> {
        if !self.eat("IF") {
            return Ok(Condition::None);
        }
        if self.eat("EXISTS") {
            return Ok(Condition::Exists);
        }
        Ok(Condition::Columns(self.conditions(&[])?))
    }
}
