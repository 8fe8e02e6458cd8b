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
        ("/{code}", "get"),
    ];
    let got: Vec<(&str, &str)> = got.iter().map(|(p, m)| (*p, m.as_str())).collect();
    assert_eq!(got, expected);
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
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
