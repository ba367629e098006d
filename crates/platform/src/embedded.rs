//! What the embedded (fjall) stores share: opening a database that carries a format-version
//! marker, and the conformance-suite macro every store trait instantiates per backend.

use std::path::Path;

use fjall::{KeyspaceCreateOptions, PersistMode, SingleWriterTxDatabase};

/// Opens (or creates) the database of `what` in `dir`, refusing one written in another
/// format version, and marking a new one with `version`.
pub fn open_versioned(dir: &Path, what: &str, version: &str) -> Result<SingleWriterTxDatabase, String> {
    let db = SingleWriterTxDatabase::builder(dir).open().map_err(|e| e.to_string())?;
    let meta = db.keyspace("meta", KeyspaceCreateOptions::default).map_err(|e| e.to_string())?;
    match meta.get("format_version").map_err(|e| e.to_string())? {
        Some(found) if found.as_ref() != version.as_bytes() => Err(format!(
            "{what} store in {} has format version {}, this build reads {version}",
            dir.display(),
            String::from_utf8_lossy(&found)
        )),
        Some(_) => Ok(db),
        None => {
            meta.insert("format_version", version).map_err(|e| e.to_string())?;
            db.persist(PersistMode::SyncAll).map_err(|e| e.to_string())?;
            Ok(db)
        }
    }
}

/// Instantiates a store trait's conformance suite for one backend: one `#[tokio::test]` per
/// case, each on a fresh store from `$make` (which returns `(guard, store)`). A suite's own
/// macro names its cases once and passes its caller's constructor through in parentheses:
/// `($($make:tt)+) => conformance_suite!(module, $crate::store::conformance, ($($make)+), [cases])`.
#[macro_export]
macro_rules! conformance_suite {
    // A backend behind a server: `$make(case)` is async and returns `None` (after printing why)
    // when no server is configured, so every case is skipped with a printed reason.
    ($module:ident, $suite:path, (async $make:expr), [$($case:ident),+ $(,)?]) => {
        mod $module {
            use super::*;
            use $suite as suite;
            $(
                #[tokio::test]
                async fn $case() {
                    let Some((_guard, store)) = ($make)(concat!(module_path!(), "::", stringify!($case))).await else {
                        return;
                    };
                    suite::$case(&store).await;
                }
            )+
        }
    };
    ($module:ident, $suite:path, ($make:expr), [$($case:ident),+ $(,)?]) => {
        mod $module {
            use super::*;
            use $suite as suite;
            $(
                #[tokio::test]
                async fn $case() {
                    let (_guard, store) = ($make)();
                    suite::$case(&store).await;
                }
            )+
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_of_another_format_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(open_versioned(dir.path(), "test", "1").unwrap());
        drop(open_versioned(dir.path(), "test", "1").unwrap());
        let Err(err) = open_versioned(dir.path(), "test", "2") else { panic!("opened a newer format") };
        assert!(err.contains("format version 1, this build reads 2"), "{err}");
    }
}
