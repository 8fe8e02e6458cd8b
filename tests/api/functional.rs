//! The seed's functional table, F-01 … F-14, one test (or more) per row.

use std::collections::HashSet;

use chrono::{Duration, Utc};
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn f01_create_short_url_returns_201_with_short_url() {
    let app = spawn_app().await;
    let res = app
        .create(
            None,
            &json!({ "original_url": "https://example.com/some/page?q=1" }),
        )
        .await;
    assert_eq!(res.status(), 201);
    let loc = location(&res);
    let body: Value = res.json().await.unwrap();
    let code = body["short_code"].as_str().unwrap();
    assert_eq!(code.len(), 7);
    assert!(code.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(loc, format!("/api/v1/urls/{code}"));
    assert_eq!(body["short_url"], format!("{BASE}/{code}"));
    assert_eq!(body["original_url"], "https://example.com/some/page?q=1");
    assert_eq!(body["redirect_type"], 302);
    assert_eq!(body["qr_code_url"], format!("{BASE}/api/v1/urls/{code}/qr"));
    assert!(body["created_at"].is_string());
    assert!(body["expires_at"].is_null());
    assert_eq!(body["metadata"], json!({}));
}

#[tokio::test]
async fn f02_custom_alias_is_used() {
    let app = spawn_app().await;
    let res = app
        .create(
            None,
            &json!({ "original_url": "https://example.com/", "custom_alias": "my-Link_1" }),
        )
        .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["short_code"], "my-Link_1");
    let res = app.get("/my-Link_1", None).await;
    assert_eq!(res.status(), 302);
    assert_eq!(location(&res), "https://example.com/");
}

#[tokio::test]
async fn f03_duplicate_alias_is_409_alias_exists() {
    let app = spawn_app().await;
    let body = json!({ "original_url": "https://example.com/a", "custom_alias": "taken" });
    assert_eq!(app.create(None, &body).await.status(), 201);
    let res = app
        .create(
            None,
            &json!({ "original_url": "https://example.com/b", "custom_alias": "taken" }),
        )
        .await;
    assert_eq!(res.status(), 409);
    assert_eq!(error_code(res).await, "ALIAS_EXISTS");
    // The first link is untouched.
    assert_eq!(location(&app.get("/taken", None).await), "https://example.com/a");
}

#[tokio::test]
async fn f04_invalid_urls_are_400_invalid_url() {
    let app = spawn_app().await;
    for bad in [
        "not a url",
        "javascript:alert(1)",
        "data:text/html,hi",
        "file:///etc/passwd",
        "ftp://example.com/x",
        "http://",
        "https://kurz.test/abc",
        "",
    ] {
        let res = app.create(None, &json!({ "original_url": bad })).await;
        assert_eq!(res.status(), 400, "{bad}");
        assert_eq!(error_code(res).await, "INVALID_URL", "{bad}");
    }
    let long = format!("https://example.com/{}", "a".repeat(2100));
    let res = app.create(None, &json!({ "original_url": long })).await;
    assert_eq!(error_code(res).await, "INVALID_URL");
}

#[tokio::test]
async fn f04_invalid_aliases_are_400_invalid_alias() {
    let app = spawn_app().await;
    for bad in [
        "abc",
        "abcdefghijk",
        "has space",
        "sl/ash",
        "health",
        "metrics",
        "admin",
        "static",
        "ünïcode",
    ] {
        let res = app
            .create(
                None,
                &json!({ "original_url": "https://example.com", "custom_alias": bad }),
            )
            .await;
        assert_eq!(res.status(), 400, "{bad}");
        assert_eq!(error_code(res).await, "INVALID_ALIAS", "{bad}");
    }
}

#[tokio::test]
async fn f05_redirect_valid_is_302_with_location_get_and_head() {
    let app = spawn_app().await;
    let code = app.create_code("https://example.com/target").await;
    let res = app.get(&format!("/{code}"), None).await;
    assert_eq!(res.status(), 302);
    assert_eq!(location(&res), "https://example.com/target");
    let res = app
        .client
        .head(app.url(&format!("/{code}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    assert_eq!(location(&res), "https://example.com/target");
    // Unknown codes are 404 in the error shape.
    let res = app.get("/zzzzzzz", None).await;
    assert_eq!(res.status(), 404);
    assert_eq!(error_code(res).await, "NOT_FOUND");
}

#[tokio::test]
async fn f05_redirect_type_301_per_link() {
    let app = spawn_app().await;
    let res = app
        .create(
            None,
            &json!({ "original_url": "https://example.com/p", "redirect_type": 301 }),
        )
        .await;
    let code = short_code(res).await;
    let res = app.get(&format!("/{code}"), None).await;
    assert_eq!(res.status(), 301);
    assert_eq!(location(&res), "https://example.com/p");
}

#[tokio::test]
async fn f06_redirect_expired_is_410_expired() {
    let app = spawn_app().await;
    let soon = (Utc::now() + Duration::milliseconds(1200)).to_rfc3339();
    let res = app
        .create(
            Some(ADMIN_KEY),
            &json!({ "original_url": "https://example.com/e", "expires_at": soon }),
        )
        .await;
    assert_eq!(res.status(), 201);
    let code = short_code(res).await;
    // Served (and cached) while valid…
    assert_eq!(app.get(&format!("/{code}"), None).await.status(), 302);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    // …and gone once expired, even though the cache still holds it.
    let res = app.get(&format!("/{code}"), None).await;
    assert_eq!(res.status(), 410);
    assert_eq!(error_code(res).await, "EXPIRED");
    // The info endpoint says the same.
    let res = app.get(&format!("/api/v1/urls/{code}"), Some(ADMIN_KEY)).await;
    assert_eq!(res.status(), 410);
    assert_eq!(error_code(res).await, "EXPIRED");
}

#[tokio::test]
async fn f06_expires_in_days_sets_expiry() {
    let app = spawn_app().await;
    let res = app
        .create(
            None,
            &json!({ "original_url": "https://example.com", "expires_in_days": 7 }),
        )
        .await;
    let body: Value = res.json().await.unwrap();
    let created = chrono::DateTime::parse_from_rfc3339(body["created_at"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires - created, Duration::days(7));
    for bad in [json!(0), json!(3651), json!("7")] {
        let res = app
            .create(
                None,
                &json!({ "original_url": "https://example.com", "expires_in_days": bad }),
            )
            .await;
        assert_eq!(res.status(), 400);
        assert_eq!(error_code(res).await, "INVALID_REQUEST");
    }
}

#[tokio::test]
async fn f07_stats_returns_200_with_full_shape_and_zero_filled_buckets() {
    let app = spawn_app().await;
    let code = app.create_code("https://example.com/s").await;
    let res = app
        .get(
            &format!("/api/v1/urls/{code}/stats?start_date=2026-01-01&end_date=2026-01-07&granularity=day"),
            Some(ADMIN_KEY),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    for field in ["total_clicks", "unique_visitors", "bots"] {
        assert!(body[field].is_u64(), "{field}");
    }
    for field in ["geographic", "referrers", "browsers", "operating_systems"] {
        assert!(body[field].is_array(), "{field}");
    }
    for d in ["mobile", "desktop", "tablet", "other"] {
        assert!(body["devices"][d].is_u64(), "{d}");
    }
    let series = body["time_series"].as_array().unwrap();
    assert_eq!(series.len(), 7, "every day of 1–7 January, end date inclusive");
    assert_eq!(series[0]["timestamp"], "2026-01-01T00:00:00Z");
    assert_eq!(series[6]["timestamp"], "2026-01-07T00:00:00Z");
    assert!(series.iter().all(|b| b["clicks"].is_u64()));
    // Hourly buckets.
    let res = app
        .get(
            &format!("/api/v1/urls/{code}/stats?start_date=2026-01-01&end_date=2026-01-01&granularity=hour"),
            Some(ADMIN_KEY),
        )
        .await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["time_series"]
            .as_array()
            .unwrap()
            .len(),
        24
    );
    // Weekly: ISO weeks (from Monday) that meet 1–31 January 2026, a Thursday to a
    // Saturday.
    let res = app
        .get(
            &format!("/api/v1/urls/{code}/stats?start_date=2026-01-01&end_date=2026-01-31&granularity=week"),
            Some(ADMIN_KEY),
        )
        .await;
    assert_eq!(res.status(), 200);
    let weeks: Vec<String> = res.json::<Value>().await.unwrap()["time_series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["timestamp"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        weeks,
        [
            "2025-12-29T00:00:00Z",
            "2026-01-05T00:00:00Z",
            "2026-01-12T00:00:00Z",
            "2026-01-19T00:00:00Z",
            "2026-01-26T00:00:00Z"
        ]
    );
    // Default: the last 30 days by day.
    let res = app
        .get(&format!("/api/v1/urls/{code}/stats"), Some(ADMIN_KEY))
        .await;
    let n = res.json::<Value>().await.unwrap()["time_series"]
        .as_array()
        .unwrap()
        .len();
    assert!((30..=31).contains(&n), "{n}");
}

#[tokio::test]
async fn f07_stats_parameters_are_validated() {
    let app = spawn_app().await;
    let code = app.create_code("https://example.com/s").await;
    for q in [
        "granularity=minute",
        "start_date=yesterday",
        "start_date=2026-02-01&end_date=2026-01-01",
        "start_date=2000-01-01&end_date=2026-01-01&granularity=hour",
    ] {
        let res = app
            .get(&format!("/api/v1/urls/{code}/stats?{q}"), Some(ADMIN_KEY))
            .await;
        assert_eq!(res.status(), 400, "{q}");
        assert_eq!(error_code(res).await, "INVALID_REQUEST");
    }
}

#[tokio::test]
async fn f08_bulk_all_valid_is_201_in_input_order() {
    let app = spawn_app().await;
    let urls: Vec<Value> = (0..50)
        .map(|i| json!({ "original_url": format!("https://example.com/{i}") }))
        .collect();
    let res = app.bulk(Some(ADMIN_KEY), &json!({ "urls": urls })).await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 50);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["index"], i);
        assert_eq!(r["status"], "created");
        assert_eq!(r["original_url"], format!("https://example.com/{i}"));
        let code = r["short_code"].as_str().unwrap();
        assert_eq!(r["short_url"], format!("{BASE}/{code}"));
    }
    let code = results[17]["short_code"].as_str().unwrap();
    assert_eq!(
        location(&app.get(&format!("/{code}"), None).await),
        "https://example.com/17"
    );
}

#[tokio::test]
async fn f08_bulk_partial_failure_is_207_and_bad_items_do_not_fail_others() {
    let app = spawn_app().await;
    app.create(
        None,
        &json!({ "original_url": "https://example.com", "custom_alias": "exists" }),
    )
    .await;
    let res = app
        .client
        .post(app.url("/api/v1/urls/bulk"))
        .json(&json!({ "urls": [
            { "original_url": "https://example.com/ok1" },
            { "original_url": "javascript:alert(1)" },
            { "original_url": "https://example.com/dup", "custom_alias": "exists" },
            { "original_url": "https://example.com/ok2", "custom_alias": "fresh1" },
            { "original_url": "https://example.com/twice", "custom_alias": "fresh1" },
            { "original_url": "https://example.com/bad-alias", "custom_alias": "x" },
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 207);
    let body: Value = res.json().await.unwrap();
    let r = body["results"].as_array().unwrap();
    let statuses: Vec<&str> = r.iter().map(|x| x["status"].as_str().unwrap()).collect();
    assert_eq!(
        statuses,
        ["created", "failed", "failed", "created", "failed", "failed"]
    );
    assert_eq!(r[1]["code"], "INVALID_URL");
    assert_eq!(r[2]["code"], "ALIAS_EXISTS");
    assert_eq!(r[4]["code"], "ALIAS_EXISTS");
    assert_eq!(r[5]["code"], "INVALID_ALIAS");
    assert!(r[1]["error"].is_string());
    assert_eq!(
        location(&app.get("/fresh1", None).await),
        "https://example.com/ok2"
    );
}

#[tokio::test]
async fn f08_bulk_empty_or_over_1000_is_400() {
    let app = spawn_app().await;
    let too_many: Vec<Value> = (0..1001)
        .map(|_| json!({ "original_url": "https://example.com" }))
        .collect();
    for urls in [json!([]), json!(too_many)] {
        let res = app.bulk(None, &json!({ "urls": urls })).await;
        assert_eq!(res.status(), 400);
        assert_eq!(error_code(res).await, "INVALID_REQUEST");
    }
}

#[tokio::test]
async fn f09_update_url_is_200_and_next_redirect_follows_it() {
    let app = spawn_app().await;
    let code = app.create_code("https://example.com/old").await;
    // Warm the cache with the old target.
    assert_eq!(
        location(&app.get(&format!("/{code}"), None).await),
        "https://example.com/old"
    );
    let res = app
        .patch(
            &code,
            ADMIN_KEY,
            &json!({ "original_url": "https://example.com/new", "metadata": { "campaign": "q4" } }),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["message"], "URL updated");
    assert_eq!(body["url"]["original_url"], "https://example.com/new");
    assert_eq!(body["url"]["metadata"]["campaign"], "q4");
    assert_eq!(
        location(&app.get(&format!("/{code}"), None).await),
        "https://example.com/new"
    );

    // Disable: the redirect says 410 DISABLED, the owner still sees the link.
    assert_eq!(
        app.patch(&code, ADMIN_KEY, &json!({ "is_active": false }))
            .await
            .status(),
        200
    );
    let res = app.get(&format!("/{code}"), None).await;
    assert_eq!(res.status(), 410);
    assert_eq!(error_code(res).await, "DISABLED");
    let info: Value = app
        .get(&format!("/api/v1/urls/{code}"), Some(ADMIN_KEY))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["is_active"], false);
    assert_eq!(
        app.patch(
            &code,
            ADMIN_KEY,
            &json!({ "is_active": true, "redirect_type": 301 })
        )
        .await
        .status(),
        200
    );
    assert_eq!(app.get(&format!("/{code}"), None).await.status(), 301);

    // Expiry can be set and cleared.
    let later = (Utc::now() + Duration::days(2)).to_rfc3339();
    let body: Value = app
        .patch(&code, ADMIN_KEY, &json!({ "expires_at": later }))
        .await
        .json()
        .await
        .unwrap();
    assert!(body["url"]["expires_at"].is_string());
    let body: Value = app
        .patch(&code, ADMIN_KEY, &json!({ "expires_at": null }))
        .await
        .json()
        .await
        .unwrap();
    assert!(body["url"]["expires_at"].is_null());
}

#[tokio::test]
async fn f09_update_rejects_bad_fields_and_empty_patch() {
    let app = spawn_app().await;
    let code = app.create_code("https://example.com/old").await;
    for (body, expected) in [
        (json!({}), "INVALID_REQUEST"),
        (json!({ "original_url": "javascript:x" }), "INVALID_URL"),
        (json!({ "redirect_type": 307 }), "INVALID_REQUEST"),
        (json!({ "expires_at": "2001-01-01T00:00:00Z" }), "INVALID_REQUEST"),
        (json!({ "short_code": "hijack" }), "INVALID_REQUEST"),
    ] {
        let res = app.patch(&code, ADMIN_KEY, &body).await;
        assert_eq!(res.status(), 400, "{body}");
        assert_eq!(error_code(res).await, expected, "{body}");
    }
    assert_eq!(
        location(&app.get(&format!("/{code}"), None).await),
        "https://example.com/old"
    );
    let res = app
        .patch("nosuchcode", ADMIN_KEY, &json!({ "is_active": false }))
        .await;
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn f10_delete_is_204_then_404_and_the_code_is_never_reissued() {
    let app = spawn_app().await;
    app.create(
        Some(ADMIN_KEY),
        &json!({ "original_url": "https://example.com", "custom_alias": "gone1" }),
    )
    .await;
    assert_eq!(app.get("/gone1", None).await.status(), 302);
    let res = app.delete("gone1", ADMIN_KEY).await;
    assert_eq!(res.status(), 204);
    assert_eq!(app.get("/gone1", None).await.status(), 404);
    assert_eq!(app.get("/api/v1/urls/gone1", Some(ADMIN_KEY)).await.status(), 404);
    let res = app.delete("gone1", ADMIN_KEY).await;
    assert_eq!(res.status(), 404);
    // Not reissued, even as an alias.
    let res = app
        .create(
            None,
            &json!({ "original_url": "https://evil.example", "custom_alias": "gone1" }),
        )
        .await;
    assert_eq!(res.status(), 409);
}

#[tokio::test]
async fn f11_rate_limit_hit_is_429_with_retry_after() {
    let app = spawn_with(|c| c.limits.free = 3).await;
    let key = app.user("free@example.com", "free").await;
    for remaining in (0..3).rev() {
        let res = app
            .create(Some(&key), &json!({ "original_url": "https://example.com" }))
            .await;
        assert_eq!(res.status(), 201);
        assert_eq!(res.headers()["x-ratelimit-limit"], "3");
        assert_eq!(
            res.headers()["x-ratelimit-remaining"],
            remaining.to_string().as_str()
        );
        assert!(res.headers().contains_key("x-ratelimit-reset"));
    }
    let res = app
        .create(Some(&key), &json!({ "original_url": "https://example.com" }))
        .await;
    assert_eq!(res.status(), 429);
    let retry_header: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert_eq!(res.headers()["x-ratelimit-remaining"], "0");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "RATE_LIMIT_EXCEEDED");
    let retry_body = body["retry_after"].as_u64().unwrap();
    assert_eq!(retry_body, retry_header);
    assert!(
        (1..=20).contains(&retry_body),
        "one token per 20 s at 3/min: {retry_body}"
    );
    // Redirects are not API calls: still served.
    assert_eq!(app.get("/nothere", None).await.status(), 404);
}

#[tokio::test]
async fn f12_invalid_api_key_is_401_never_anonymous() {
    let app = spawn_app().await;
    let res = app
        .create(
            Some("kurz_wrongwrongwrong"),
            &json!({ "original_url": "https://example.com" }),
        )
        .await;
    assert_eq!(res.status(), 401);
    assert_eq!(error_code(res).await, "UNAUTHORIZED");
    let code = app.create_code("https://example.com").await;
    let res = app.get(&format!("/api/v1/urls/{code}"), Some("nope")).await;
    assert_eq!(res.status(), 401);
    for authz in ["Bearer not.a.jwt", "Basic YTpi", "Bearer"] {
        let res = app
            .client
            .get(app.url("/api/v1/urls"))
            .header("Authorization", authz)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{authz}");
        assert_eq!(error_code(res).await, "UNAUTHORIZED");
    }
}

#[tokio::test]
async fn f13_idempotent_retry_gets_the_same_response() {
    let app = spawn_app().await;
    let body = json!({ "original_url": "https://example.com/once" });
    let send = |b: Value| {
        app.client
            .post(app.url("/api/v1/urls"))
            .header("X-API-Key", ADMIN_KEY)
            .header("X-Idempotency-Key", "order-42")
            .json(&b)
            .send()
    };
    let first = send(body.clone()).await.unwrap();
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_bytes = first.bytes().await.unwrap();
    let second = send(body.clone()).await.unwrap();
    assert_eq!(second.status(), 201);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(second.bytes().await.unwrap(), first_bytes, "byte for byte");
    let third = send(json!({ "original_url": "https://example.com/other" }))
        .await
        .unwrap();
    assert_eq!(third.status(), 422);
    assert_eq!(error_code(third).await, "IDEMPOTENCY_KEY_REUSED");
}

#[tokio::test]
async fn f14_kgs_100k_creates_give_100k_distinct_codes() {
    let app = spawn_app().await;
    let mut tasks = Vec::new();
    for t in 0..4 {
        let client = app.client.clone();
        let url = app.url("/api/v1/urls/bulk");
        tasks.push(tokio::spawn(async move {
            let mut codes = Vec::with_capacity(25_000);
            for batch in 0..25 {
                let urls: Vec<Value> = (0..1000)
                    .map(|i| json!({ "original_url": format!("https://example.com/{t}/{batch}/{i}") }))
                    .collect();
                let res = client
                    .post(&url)
                    .header("X-API-Key", ADMIN_KEY)
                    .json(&json!({ "urls": urls }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201);
                let body: Value = res.json().await.unwrap();
                for r in body["results"].as_array().unwrap() {
                    codes.push(r["short_code"].as_str().unwrap().to_owned());
                }
            }
            codes
        }));
    }
    let mut all = HashSet::new();
    let mut total = 0;
    for t in tasks {
        for code in t.await.unwrap() {
            assert_eq!(code.len(), 7);
            total += 1;
            all.insert(code);
        }
    }
    assert_eq!(total, 100_000);
    assert_eq!(all.len(), 100_000, "every code distinct");
}
