//! The web interface as the server delivers it: routes, security headers, gzip and
//! revalidation. (What the page does is tested in a real browser: tests/browser.)

use std::io::Read;

use crate::helpers::*;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
                   connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

fn assert_hardened(res: &reqwest::Response, what: &str) {
    let h = res.headers();
    assert_eq!(h["content-security-policy"], CSP, "{what}");
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
    assert_eq!(h["x-frame-options"], "DENY", "{what}");
}

#[tokio::test]
async fn browsers_land_on_the_app_and_every_answer_is_hardened() {
    let app = spawn_app().await;
    let res = app.get("/", None).await;
    assert_eq!(res.status(), 303, "GET / sends browsers to the app (See Other)");
    assert_eq!(location(&res), "/app/");
    assert_hardened(&res, "/");
    let res = app.get("/app", None).await;
    assert_eq!(res.status(), 308);
    assert_eq!(location(&res), "/app/");
    let res = app.get("/app/", None).await;
    assert_eq!(res.status(), 200);
    assert_hardened(&res, "/app/");
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(res.headers()["cache-control"], "no-cache");
    let page = res.text().await.unwrap();
    assert!(page.contains("/app/app.js"), "the page loads its script");
    assert!(
        !page.contains("<script>"),
        "no inline script (the CSP forbids it)"
    );
    for (path, kind) in [
        ("/app/app.js", "text/javascript; charset=utf-8"),
        ("/app/app.css", "text/css; charset=utf-8"),
        ("/app/vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
        ("/app/favicon.svg", "image/svg+xml"),
    ] {
        let res = app.get(path, None).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()["content-type"], kind, "{path}");
        assert_hardened(&res, path);
    }
    for missing in [
        "/app/README.md",
        "/app/vendor.sh",
        "/app/nope.js",
        "/app/../Cargo.toml",
    ] {
        let res = app.get(missing, None).await;
        assert_eq!(res.status(), 404, "{missing}");
        assert_eq!(error_code(res).await, "NOT_FOUND");
    }
}

#[tokio::test]
async fn files_are_gzipped_when_accepted_and_revalidated_by_etag() {
    let app = spawn_app().await;
    let plain = app.get("/app/app.js", None).await;
    assert!(plain.headers().get("content-encoding").is_none());
    let etag = plain.headers()["etag"].clone();
    let plain = plain.bytes().await.unwrap();
    let res = app
        .client
        .get(app.url("/app/app.js"))
        .header("accept-encoding", "gzip, deflate")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-encoding"], "gzip");
    assert_eq!(res.headers()["vary"], "accept-encoding");
    let zipped = res.bytes().await.unwrap();
    assert!(zipped.len() < plain.len());
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&zipped[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, plain, "the same file, compressed");
    let res = app
        .client
        .get(app.url("/app/app.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    assert!(res.bytes().await.unwrap().is_empty());
}
