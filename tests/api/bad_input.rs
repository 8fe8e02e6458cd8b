//! The bad-input battery: injection strings in every field, junk in paths, broken
//! and oversized bodies. Every answer is a 4xx in the error shape, and the links
//! that existed before still work afterwards (nothing half-written, nothing dropped).

use serde_json::{Value, json};

use crate::helpers::*;

const NASTY: &[&str] = &[
    "'; DROP TABLE links; --",
    "\" OR 1=1 --",
    "1; DELETE FROM users",
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
    "javascript:alert(document.cookie)",
    "../../../../etc/passwd",
    "%00%0d%0aSet-Cookie:x=y",
    "\u{0000}",
    "${jndi:ldap://x}",
    "{{7*7}}",
];

async fn existing_links_still_work(app: &TestApp, links: &[(String, String)]) {
    for (code, url) in links {
        let res = app.get(&format!("/{code}"), None).await;
        assert_eq!(res.status(), 302, "{code}");
        assert_eq!(location(&res), *url);
    }
    let res = app.get("/api/v1/urls", Some(ADMIN_KEY)).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["items"].as_array().unwrap().len(),
        links.len(),
        "no partial rows were written"
    );
}

async fn seed(app: &TestApp) -> Vec<(String, String)> {
    let mut links = Vec::new();
    for i in 0..3 {
        let url = format!("https://example.com/keep/{i}");
        links.push((app.create_code(&url).await, url));
    }
    links
}

#[tokio::test]
async fn injection_strings_in_every_create_field_are_4xx() {
    let app = spawn_app().await;
    let links = seed(&app).await;
    for s in NASTY {
        for body in [
            json!({ "original_url": s }),
            json!({ "original_url": "https://example.com", "custom_alias": s }),
            json!({ "original_url": "https://example.com", "expires_at": s }),
            json!({ "original_url": "https://example.com", "expires_in_days": s }),
            json!({ "original_url": "https://example.com", "redirect_type": s }),
            json!({ "original_url": "https://example.com", "metadata": s }),
            json!({ "original_url": "https://example.com", (*s): "x" }),
        ] {
            let res = app.create(Some(ADMIN_KEY), &body).await;
            assert!(res.status().is_client_error(), "{body} → {}", res.status());
            let code = error_code(res).await;
            assert!(
                ["INVALID_URL", "INVALID_ALIAS", "INVALID_REQUEST"].contains(&code.as_str()),
                "{code}"
            );
        }
        // As metadata *values* they are plain strings: stored and returned verbatim,
        // never interpreted. (NUL is refused: no text column can hold it.)
        if s.contains('\0') {
            let res = app
                .create(
                    Some(ADMIN_KEY),
                    &json!({ "original_url": "https://example.com/m", "metadata": { "k": s } }),
                )
                .await;
            assert_eq!(res.status(), 400);
            continue;
        }
        let res = app
            .create(
                Some(ADMIN_KEY),
                &json!({ "original_url": "https://example.com/m", "metadata": { "k": s } }),
            )
            .await;
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["metadata"]["k"], *s);
        let code = body["short_code"].as_str().unwrap().to_owned();
        let res = app.delete(&code, ADMIN_KEY).await;
        assert_eq!(res.status(), 204);
    }
    existing_links_still_work(&app, &links).await;
}

#[tokio::test]
async fn injection_strings_in_users_patch_and_headers_are_4xx() {
    let app = spawn_app().await;
    let links = seed(&app).await;
    let code = links[0].0.clone();
    for s in NASTY {
        let res = app
            .client
            .post(app.url("/api/v1/users"))
            .header("X-API-Key", ADMIN_KEY)
            .json(&json!({ "email": s, "tier": s }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{s}");
        error_code(res).await;
        for body in [
            json!({ "original_url": s }),
            json!({ "expires_at": s }),
            json!({ "metadata": s }),
        ] {
            let res = app.patch(&code, ADMIN_KEY, &body).await;
            assert_eq!(res.status(), 400, "{body}");
            error_code(res).await;
        }
        // As an API key it is just a wrong key.
        if let Ok(v) = reqwest::header::HeaderValue::from_str(s) {
            let res = app
                .client
                .get(app.url("/api/v1/urls"))
                .header("X-API-Key", v)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 401, "{s}");
            error_code(res).await;
        }
    }
    existing_links_still_work(&app, &links).await;
}

#[tokio::test]
async fn junk_codes_in_paths_are_404_in_the_error_shape() {
    let app = spawn_app().await;
    let links = seed(&app).await;
    let long = "a".repeat(5000);
    for path in [
        "/%27%3B%20DROP%20TABLE%20links%3B--",
        "/%3Cscript%3E",
        "/..%2F..%2Fetc%2Fpasswd",
        "/a%00b",
        "/%F0%9F%92%A9",
        &format!("/{long}"),
        "/api/v1/urls/%27%20OR%201=1",
        "/api/v1/urls/%3Cscript%3E/stats",
    ] {
        let res = app.get(path, Some(ADMIN_KEY)).await;
        assert_eq!(res.status(), 404, "{path}");
        assert_eq!(error_code(res).await, "NOT_FOUND", "{path}");
    }
    // Query junk on stats is a 400, not a 500.
    let res = app
        .get(
            &format!("/api/v1/urls/{}/stats?start_date=%27%3B--", links[0].0),
            Some(ADMIN_KEY),
        )
        .await;
    assert_eq!(res.status(), 400);
    existing_links_still_work(&app, &links).await;
}

#[tokio::test]
async fn malformed_bodies_are_4xx_in_the_error_shape() {
    let app = spawn_app().await;
    let links = seed(&app).await;
    let post = |body: &'static str, ct: Option<&'static str>| {
        let mut req = app.client.post(app.url("/api/v1/urls")).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    for (body, ct, status) in [
        ("{", Some("application/json"), 400),
        ("", Some("application/json"), 400),
        ("null", Some("application/json"), 400),
        ("[1,2]", Some("application/json"), 400),
        ("{\"original_url\": 5}", Some("application/json"), 400),
        ("{\"original_url\": \"https://e.com\"}", Some("text/plain"), 415),
        ("{\"original_url\": \"https://e.com\"}", None, 415),
        (
            "original_url=https://e.com",
            Some("application/x-www-form-urlencoded"),
            415,
        ),
    ] {
        let res = post(body, ct).await.unwrap();
        assert_eq!(res.status(), status, "{body:?} {ct:?}");
        assert_eq!(error_code(res).await, "INVALID_REQUEST");
    }
    existing_links_still_work(&app, &links).await;
}

#[tokio::test]
async fn oversized_bodies_are_413_payload_too_large() {
    let app = spawn_app().await;
    let links = seed(&app).await;
    let huge = json!({ "original_url": "https://example.com", "metadata": { "k": "x".repeat(100 * 1024) } });
    let res = app.create(Some(ADMIN_KEY), &huge).await;
    assert_eq!(res.status(), 413);
    assert_eq!(error_code(res).await, "PAYLOAD_TOO_LARGE");
    // The same through the idempotency path, which buffers the body itself.
    let res = app
        .client
        .post(app.url("/api/v1/urls/bulk"))
        .header("X-Idempotency-Key", "big")
        .header("content-type", "application/json")
        .body(vec![b' '; 9 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(error_code(res).await, "PAYLOAD_TOO_LARGE");
    existing_links_still_work(&app, &links).await;
}
