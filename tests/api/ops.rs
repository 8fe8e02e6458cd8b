//! Health, metrics, OpenAPI, and the error shape of unknown routes.

use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn health_reports_components_and_version() {
    let app = spawn_app().await;
    let res = app.get("/health", None).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "healthy");
    for c in ["database", "cache", "kgs"] {
        assert_eq!(body["components"][c], "healthy", "{c}");
    }
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn metrics_expose_requests_latency_cache_kgs_and_creates() {
    let app = spawn_app().await;
    let code = app.create_code("https://example.com/m").await;
    for _ in 0..3 {
        app.get(&format!("/{code}"), None).await;
    }
    app.get("/nosuch9", None).await;
    let res = app.get("/metrics", None).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = res.text().await.unwrap();
    for needle in [
        "kurz_http_requests_total{route=\"/{code}\",method=\"GET\",status=\"302\"}",
        "kurz_http_requests_total{route=\"/{code}\",method=\"GET\",status=\"404\"}",
        "kurz_http_request_duration_seconds_bucket{route=\"/{code}\"",
        "kurz_cache_requests_total{result=\"hit\"}",
        "kurz_cache_requests_total{result=\"miss\"}",
        "kurz_kgs_keys_left",
        "kurz_links_created_total",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
}

#[tokio::test]
async fn openapi_document_lists_every_endpoint() {
    let app = spawn_app().await;
    let res = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let mut got: Vec<(&str, String)> = Vec::new();
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            got.push((path.as_str(), method.clone()));
        }
    }
    got.sort();
    let expected = [
        ("/api/v1/auth/token", "post"),
        ("/api/v1/openapi.json", "get"),
        ("/api/v1/urls", "get"),
        ("/api/v1/urls", "post"),
        ("/api/v1/urls/bulk", "post"),
        ("/api/v1/urls/{code}", "delete"),
        ("/api/v1/urls/{code}", "get"),
        ("/api/v1/urls/{code}", "patch"),
        ("/api/v1/urls/{code}/qr", "get"),
        ("/api/v1/urls/{code}/stats", "get"),
        ("/api/v1/users", "post"),
        ("/health", "get"),
        ("/metrics", "get"),
        ("/{code}", "get"),
        ("/{code}", "head"),
    ];
    let got: Vec<(&str, &str)> = got.iter().map(|(p, m)| (*p, m.as_str())).collect();
    assert_eq!(got, expected);
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
}

/// The whole document against its snapshot, `docs/openapi.json`, so that any change
/// to the API shows in review. After an intended change, write the new snapshot with
/// `KURZ_UPDATE_OPENAPI=1 cargo nextest run --test api openapi_document_matches` and
/// commit it.
#[tokio::test]
async fn openapi_document_matches_its_snapshot() {
    let app = spawn_app().await;
    let served: Value = app.get("/api/v1/openapi.json", None).await.json().await.unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    let pretty = format!("{}\n", serde_json::to_string_pretty(&served).unwrap());
    if std::env::var_os("KURZ_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &pretty).unwrap();
    }
    let snapshot = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        snapshot == pretty,
        "the served OpenAPI document differs from docs/openapi.json; if the change is meant, \
         run with KURZ_UPDATE_OPENAPI=1 and commit the file"
    );
}

/// Each operation says who may call it: nothing for the public ones, an optional
/// credential where anonymous callers are welcome, a key for the token exchange.
#[tokio::test]
async fn openapi_security_is_per_operation() {
    let app = spawn_app().await;
    let doc: Value = app.get("/api/v1/openapi.json", None).await.json().await.unwrap();
    assert!(doc.get("security").is_none(), "no global requirement");
    let security = |path: &str, method: &str| doc["paths"][path][method]["security"].to_string();
    for (path, method) in [
        ("/health", "get"),
        ("/{code}", "get"),
        ("/{code}", "head"),
        ("/metrics", "get"),
    ] {
        assert_eq!(security(path, method), "[]", "{method} {path}");
    }
    let optional = r#"[{},{"api_key":[]},{"bearer":[]}]"#;
    assert_eq!(security("/api/v1/urls", "post"), optional);
    assert_eq!(security("/api/v1/urls/{code}/qr", "get"), optional);
    assert_eq!(
        security("/api/v1/urls", "get"),
        r#"[{"api_key":[]},{"bearer":[]}]"#
    );
    assert_eq!(security("/api/v1/auth/token", "post"), r#"[{"api_key":[]}]"#);
    let limit = &doc["paths"]["/api/v1/urls"]["get"]["parameters"][0];
    assert_eq!(limit["in"], "query");
    assert_eq!(limit["schema"]["maximum"], 100);
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_error_shape() {
    let app = spawn_app().await;
    let res = app.get("/api/v1/nothing/here", None).await;
    assert_eq!(res.status(), 404);
    assert_eq!(error_code(res).await, "NOT_FOUND");
    let res = app.client.put(app.url("/api/v1/urls")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(error_code(res).await, "INVALID_REQUEST");
}

/// Every request is counted under its route's pattern (axum's matched path), never
/// its own path, and anything no route matches under `unmatched`: the label set is
/// the router's routes, whatever clients send.
#[tokio::test]
async fn requests_are_labelled_with_their_route_pattern() {
    let app = spawn_app().await;
    let routes = [
        ("/abc1234", "/{code}"),
        ("/health", "/health"),
        ("/api/v1/openapi.json", "/api/v1/openapi.json"),
        ("/api/v1/urls", "/api/v1/urls"),
        ("/api/v1/urls/bulk", "/api/v1/urls/bulk"),
        ("/api/v1/urls/abc", "/api/v1/urls/{code}"),
        ("/api/v1/urls/abc/stats", "/api/v1/urls/{code}/stats"),
        ("/api/v1/urls/abc/qr", "/api/v1/urls/{code}/qr"),
        ("/api/v1/users", "/api/v1/users"),
        ("/api/v1/auth/token", "/api/v1/auth/token"),
    ];
    for (path, _) in routes {
        app.get(path, None).await;
    }
    for junk in ["/a/b", "/api/v1/nothing", "/api/v1/urls/a/b/c"] {
        assert_eq!(app.get(junk, None).await.status(), 404, "{junk}");
    }
    let text = app.get("/metrics", None).await.text().await.unwrap();
    let labels: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("kurz_http_requests_total{"))
        .filter_map(|l| l.split("route=\"").nth(1)?.split('"').next())
        .collect();
    for (path, label) in routes {
        assert!(labels.contains(label), "{path}: no {label} in {labels:?}");
    }
    assert!(labels.contains("unmatched"), "{labels:?}");
    for (path, label) in routes {
        assert!(
            path == label || !labels.contains(path),
            "{path} became a label of its own: {labels:?}"
        );
    }
    assert!(
        !labels.iter().any(|l| l.contains("nothing") || l.contains("/a/b")),
        "{labels:?}"
    );
}

/// The metric catalog (deploy/monitoring/README.md) is on `/metrics` from the start,
/// so rules and dashboards see every series before its first event.
#[tokio::test]
async fn every_catalog_metric_is_exposed_from_the_start() {
    let app = spawn_app().await;
    // Something of each kind happens once: a create (a lease), a redirect (a click),
    // a miss.
    let code = app.create_code("https://example.com/catalog").await;
    app.get(&format!("/{code}"), None).await;
    app.get("/nosuch9", None).await;
    let mut names = vec![
        "kurz_http_requests_total{",
        "kurz_http_request_duration_seconds_bucket{",
        "kurz_cache_requests_total{result=\"hit\"}",
        "kurz_cache_requests_total{result=\"miss\"}",
        "kurz_cache_evictions_total",
        "kurz_cache_refreshes_total",
        "kurz_cache_revalidations_total",
        "kurz_cache_entries",
        "kurz_cache_capacity",
        "kurz_store_operation_duration_seconds_bucket{op=\"get_link\"",
        "kurz_store_errors_total{op=\"get_link\",kind=\"unavailable\"}",
        "kurz_store_operations_in_flight",
        "kurz_store_pool_connections{pool=\"primary\",state=\"max\"}",
        "kurz_kgs_codes_issued_total",
        "kurz_kgs_fallback_codes_total",
        "kurz_kgs_leases_total",
        "kurz_kgs_lease_failures_total",
        "kurz_kgs_keys_left",
        "kurz_kgs_block_size",
        "kurz_kgs_space_left",
        "kurz_kgs_degraded",
        "kurz_rate_limit_decisions_total{tier=\"anonymous\",result=\"limited\"}",
        "kurz_rate_limit_decisions_total{tier=\"admin\",result=\"allowed\"}",
        "kurz_click_events_enqueued_total",
        "kurz_click_events_overflow_total",
        "kurz_click_events_dropped_total",
        "kurz_click_spool_corrupt_records_total",
        "kurz_click_events_written_total{sink=\"store\"}",
        "kurz_click_events_already_written_total{sink=\"store\"}",
        "kurz_click_queue_depth",
        "kurz_links_created_total",
        "kurz_links_active",
        "kurz_build_info{version=\"",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_threads",
        "process_start_time_seconds",
    ];
    if on_postgres() {
        names.extend([
            "kurz_redis_command_duration_seconds_bucket{op=\"cache_get\"",
            "kurz_redis_errors_total",
            "kurz_redis_circuit_open",
            "kurz_cache_l2_requests_total{result=\"miss\"}",
        ]);
    }
    // The active-link count and the click lag come from background work: poll.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = app.get("/metrics", None).await.text().await.unwrap();
        let missing: Vec<&&str> = names.iter().filter(|n| !text.contains(**n)).collect();
        let lagged = text.contains("kurz_click_lag_seconds_bucket{sink=\"store\"");
        if missing.is_empty() && lagged {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "missing {missing:?} (click lag: {lagged})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// No short code, URL, IP or email ever becomes a label value: labels come from fixed
/// sets, whatever clients send.
#[tokio::test]
async fn metric_labels_never_carry_codes_urls_ips_or_emails() {
    let app = spawn_with(|c| c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let key = app.user("labels@example.com", "free").await;
    let mut secrets = vec!["labels@example.com".to_owned(), "198.51.100.77".to_owned()];
    for i in 0..5 {
        let url = format!("https://label-probe-{i}.example/path");
        let res = app
            .create(Some(&key), &serde_json::json!({ "original_url": url }))
            .await;
        let code = short_code(res).await;
        app.client
            .get(app.url(&format!("/{code}")))
            .header("x-forwarded-for", "198.51.100.77")
            .header("cf-ipcountry", "ZZ")
            .send()
            .await
            .unwrap();
        secrets.push(code);
        secrets.push(url);
    }
    app.get("/api/v1/urls/label-probe-missing", Some(&key)).await;
    secrets.push("label-probe-missing".into());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let text = app.get("/metrics", None).await.text().await.unwrap();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(labels) = line.split('{').nth(1).and_then(|l| l.split('}').next()) else {
            continue;
        };
        for secret in &secrets {
            assert!(!labels.contains(secret.as_str()), "{secret} in a label: {line}");
        }
        assert!(!labels.contains("ZZ"), "a forged country became a label: {line}");
    }
}
