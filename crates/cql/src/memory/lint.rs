//! The LWT-coarseness lint: conditional statements that compare-and-set one row of a
//! partition holding many.

use super::MemoryCql;
use crate::{CqlError, Statement};

/// A lightweight transaction on one row of a partition that holds many rows (see
/// [`MemoryCql::lint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoarseLwt {
    pub statement: &'static str,
    pub table: String,
    /// What Paxos serializes.
    pub partition_key: Vec<String>,
    /// What the statement compares and sets: the partition key and the clustering columns it
    /// restricts.
    pub row_key: Vec<String>,
}

impl std::fmt::Display for CoarseLwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: compares-and-sets a row of {} by ({}), but Paxos serializes its whole partition ({}): \
             transactions on other rows of it contend",
            self.statement,
            self.table,
            self.row_key.join(", "),
            self.partition_key.join(", ")
        )
    }
}

impl MemoryCql {
    /// Lightweight transactions among `statements` that compare-and-set one row of a partition
    /// holding many (see [`CoarseLwt`]). A conditional statement on static columns, or on a
    /// table without clustering columns, sets its whole partition and is not reported.
    pub fn lint(&self, statements: &[&'static Statement]) -> Result<Vec<CoarseLwt>, CqlError> {
        let mut found = Vec::new();
        for stmt in statements.iter().filter(|s| s.is_conditional()) {
            let parsed = self.parse(stmt)?;
            let table = self.schema.table(&parsed.table).expect("checked at parse");
            let clustering: Vec<String> = table
                .clustering
                .iter()
                .map(|(c, _)| c.clone())
                .filter(|c| parsed.restrictions.iter().any(|r| &r.column == c))
                .collect();
            if !clustering.is_empty() {
                found.push(CoarseLwt {
                    statement: stmt.name,
                    table: table.name.clone(),
                    partition_key: table.partition_key.clone(),
                    row_key: table.partition_key.iter().cloned().chain(clustering).collect(),
                });
            }
        }
        Ok(found)
    }
}
