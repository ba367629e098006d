//! Golden files of the statements a store operation runs: CQL text, consistency, idempotence
//! and bound values. `CHATMESH_BLESS=1` rewrites them; review the diff like code.

use std::{collections::BTreeSet, path::Path};

use crate::{Call, Statement};

/// Compares the rendered `calls` with the file at `path`.
pub fn check(path: impl AsRef<Path>, calls: &[Call]) {
    let path = path.as_ref();
    let got: String = calls.iter().map(Call::render).collect();
    if std::env::var("CHATMESH_BLESS").as_deref() == Ok("1") {
        // why: golden files change in a reviewed commit; a CI run that rewrote them could not fail
        assert!(std::env::var_os("CI").is_none(), "CHATMESH_BLESS is refused when CI is set");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("creating the golden directory");
        }
        std::fs::write(path, &got).expect("writing a golden file");
        return;
    }
    let want = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e} (CHATMESH_BLESS=1 writes it)", path.display()));
    if got != want {
        let diff: Vec<String> = want
            .lines()
            .zip(got.lines())
            .enumerate()
            .filter(|(_, (w, g))| w != g)
            .take(6)
            .map(|(n, (w, g))| format!("line {}:\n  expected {w}\n  got      {g}", n + 1))
            .collect();
        panic!(
            "{} differs from what the store runs ({} lines expected, {} got):\n{}\n(if the change is intended: \
             CHATMESH_BLESS=1 rewrites it; review the diff)",
            path.display(),
            want.lines().count(),
            got.lines().count(),
            diff.join("\n")
        );
    }
}

/// Fails unless every statement was run by at least one recorded call (so none escapes the
/// golden files and the schema checks).
pub fn assert_covers(statements: &[&'static Statement], calls: &[Call]) {
    let ran: BTreeSet<&str> = calls.iter().map(|c| c.name).collect();
    let missed: Vec<&str> = statements.iter().map(|s| s.name).filter(|n| !ran.contains(n)).collect();
    assert!(missed.is_empty(), "statements never run by a golden test: {missed:?}");
    let mut names = BTreeSet::new();
    for s in statements {
        assert!(names.insert(s.name), "two statements named {}", s.name);
    }
}

/// Takes the calls recorded so far (leaving the log empty for the next operation).
pub fn taken(log: &std::sync::Mutex<Vec<Call>>) -> Vec<Call> {
    std::mem::take(&mut *log.lock().unwrap_or_else(|e| e.into_inner()))
}

/// A golden file's name: the operation's, or the one given.
#[doc(hidden)]
#[macro_export]
macro_rules! __golden_name {
    ($op:ident) => {
        stringify!($op)
    };
    ($op:ident, $file:literal) => {
        $file
    };
}

/// A store's golden tests, in a `golden` module: for each operation (an async fn of the
/// calling module returning the calls it recorded) a test comparing them with
/// `<crate>/src/store/golden/<prefix><name>.txt`, and one test that every statement of
/// `statements` is run by them (and by the `also` runs, which have no file of their own).
#[macro_export]
macro_rules! golden_files {
    (
        prefix: $prefix:literal,
        statements: $statements:expr,
        also: [$($also:ident),* $(,)?],
        [$($op:ident $(=> $file:literal)?),+ $(,)?]
    ) => {
        mod golden {
            $(
                #[tokio::test]
                async fn $op() {
                    let path = format!(
                        "{}/src/store/golden/{}{}.txt",
                        env!("CARGO_MANIFEST_DIR"),
                        $prefix,
                        $crate::__golden_name!($op $(, $file)?)
                    );
                    $crate::golden::check(path, &super::$op().await);
                }
            )+

            #[tokio::test]
            async fn every_statement_is_run_by_a_golden_test() {
                let mut calls = Vec::new();
                $(calls.extend(super::$op().await);)+
                $(calls.extend(super::$also().await);)*
                $crate::golden::assert_covers(&$statements, &calls);
            }
        }
    };
}
