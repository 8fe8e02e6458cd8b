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
