//! What the Criterion benchmarks share: a runtime and a fresh, migrated SQLite store.

use kurz::store::{LinkStore, SqliteStore};

/// The runtime, the store, and the temp dir holding its file (deleted on drop, so
/// keep it alive as long as the store).
pub fn sqlite_store() -> (tokio::runtime::Runtime, SqliteStore, tempfile::TempDir) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = rt.block_on(async {
        let s = SqliteStore::connect(&url, 1).await.unwrap();
        s.migrate().await.unwrap();
        s
    });
    (rt, store, dir)
}
