//! `kurz backup` / `kurz restore` of the SQLite store (`kurz::store::backup`, what
//! the two commands call): a copy taken while kurz serves, put back as a new store on
//! which every link of the copy resolves and no code handed out after the copy is
//! handed out again. (deploy/backup/test.sh runs the commands themselves under a
//! write load.)

use std::path::PathBuf;

use kurz::store::backup;

use std::sync::Arc;

use crate::helpers::{Backend, TestApp, on_postgres, short_code, start, test_config};

fn sqlite_url(path: &std::path::Path) -> String {
    format!("sqlite://{}", path.display())
}

/// One counter value per create, so every code after the backup comes from a value
/// leased after it.
/// Also returns the folder of the database, which outlives the app.
async fn live_app() -> Option<(TestApp, PathBuf, Option<Arc<tempfile::TempDir>>)> {
    if on_postgres() {
        eprintln!("SKIPPED (SQLite only: PostgreSQL backups are deploy/backup's scripts)");
        return None;
    }
    let (mut config, backend, dir) = test_config().await;
    config.keys.block_size = 1;
    let Backend::Sqlite(path) = backend.clone() else {
        unreachable!("on_postgres() is false")
    };
    Some((start(config, backend, dir.clone()).await, path, dir))
}

#[tokio::test]
async fn a_backup_taken_while_serving_restores_every_link_and_never_reissues_a_code() {
    let Some((live, db, _dir)) = live_app().await else {
        return;
    };
    let mut before = Vec::new();
    for i in 0..5 {
        let url = format!("https://example.com/before/{i}");
        before.push((live.create_code(&url).await, url));
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("kurz-backup.db");
    let taken = backup::backup(&sqlite_url(&db), &copy).await.unwrap();
    assert_eq!(taken.links, 5);
    assert!(
        backup::backup(&sqlite_url(&db), &copy).await.is_err(),
        "overwrote a backup"
    );
    // Handed out after the backup: its code is out in the world, not in the copy.
    let after = live.create_code("https://example.com/after").await;

    let restored = dir.path().join("restored.db");
    let done = backup::restore(&sqlite_url(&restored), &copy, false, 1_000)
        .await
        .unwrap();
    assert_eq!(done.links, 5);
    assert_eq!(done.next_counter, taken.next_counter + 1_000);
    let mut config = live.config.clone();
    config.database.url = sqlite_url(&restored);
    let app = start(config, Backend::Sqlite(restored.clone()), None).await;
    for (code, url) in &before {
        let res = app.get(&format!("/{code}"), None).await;
        assert_eq!(res.status(), 302, "{code}");
        assert_eq!(crate::helpers::location(&res), *url);
    }
    assert_eq!(app.get(&format!("/{after}"), None).await.status(), 404);
    let res = app
        .create(
            Some(crate::helpers::ADMIN_KEY),
            &serde_json::json!({ "original_url": "https://example.com/new" }),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_ne!(short_code(res).await, after, "a code was handed out twice");
}

#[tokio::test]
async fn restore_refuses_to_replace_a_database_unless_forced_and_never_one_in_use() {
    let Some((live, db, db_dir)) = live_app().await else {
        return;
    };
    let code = live.create_code("https://example.com/kept").await;
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("b.db");
    backup::backup(&sqlite_url(&db), &copy).await.unwrap();

    let err = backup::restore(&sqlite_url(&db), &copy, false, 0)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--force"), "{err}");
    // The serving kurz holds it: even --force is refused, and nothing is touched.
    let err = backup::restore(&sqlite_url(&db), &copy, true, 0)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
    assert_eq!(live.get(&format!("/{code}"), None).await.status(), 302);
    let config = live.config.clone();
    drop(live);
    // Stopped (the drop ends its server; its pools close with it): --force replaces.
    crate::support::wait_for(
        "the old kurz to let go",
        std::time::Duration::from_millis(100),
        async || backup::restore(&sqlite_url(&db), &copy, true, 0).await.is_ok(),
    )
    .await;
    let app = start(config, Backend::Sqlite(db.clone()), db_dir).await;
    assert_eq!(app.get(&format!("/{code}"), None).await.status(), 302);

    // Not a kurz database: refused before anything is written.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"not a database").unwrap();
    let target = dir.path().join("fresh.db");
    assert!(
        backup::restore(&sqlite_url(&target), &junk, false, 0)
            .await
            .is_err()
    );
    assert!(!target.exists());
}
