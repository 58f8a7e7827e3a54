//! The staff API's OpenAPI contract: the committed `schemas/openapi.json` is
//! what the code generates, the gateway serves it at `/api/openapi.json`,
//! and every documented operation is a real route.
//!
//! After changing the staff API, regenerate the file with
//! `SHOKAI_UPDATE_OPENAPI=1 cargo test --test it openapi` and commit it.

use serde_json::Value;
use shokai::gateway::{Gateway, GatewayConfig};

use crate::support::repo_path;

const FILE: &str = "schemas/openapi.json";

/// Every staff route (method, path), as `staff::routes` registers them.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/v1/cases"),
    ("get", "/api/v1/cases/{id}"),
    ("get", "/api/v1/cases/{id}/file"),
    ("post", "/api/v1/cases/{id}/department-inquiry"),
    ("get", "/api/v1/admin/linkage-files"),
    ("put", "/api/v1/cases/{id}/decision"),
    ("post", "/api/v1/cases/{id}/close"),
    ("post", "/api/v1/cases/{id}/alerts/{alert}/acknowledge"),
    ("post", "/api/v1/requests"),
    ("get", "/api/v1/requests/{id}"),
    ("post", "/api/v1/requests/{id}/cancel"),
    ("post", "/api/v1/inquiries/{id}/cancel"),
    ("post", "/api/v1/admin/institutions/{code}/pause"),
    ("post", "/api/v1/admin/institutions/{code}/resume"),
    ("get", "/api/v1/admin/batches"),
    ("post", "/api/v1/admin/batches/{id}/retry"),
    ("get", "/api/v1/audit"),
];

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

fn document() -> Value {
    serde_json::from_str(&shokai::http::openapi_json()).expect("the document is JSON")
}

#[test]
fn committed_document_is_up_to_date() {
    let generated = shokai::http::openapi_json();
    let path = repo_path(FILE);
    if std::env::var_os("SHOKAI_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "{FILE} is out of date with the staff API's code (first difference at line {}).\n\
             Regenerate it with\n\n    SHOKAI_UPDATE_OPENAPI=1 cargo test --test it openapi\n\n\
             and commit the result.",
            line + 1
        );
    }
}

#[test]
fn document_is_openapi_3_1_and_covers_every_route() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    for (method, path) in ROUTES {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{} {path} is not in the OpenAPI document",
            method.to_uppercase()
        );
    }
    let documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(move |m| (m.to_string(), path.clone()))
        })
        .collect();
    assert_eq!(
        documented.len(),
        ROUTES.len(),
        "the document has operations that are not staff routes: {documented:?}"
    );
}

#[test]
fn every_operation_needs_the_bearer_token_and_answers_problems() {
    let doc = document();
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        serde_json::json!({
            "type": "http",
            "scheme": "bearer",
            "description": doc["components"]["securitySchemes"]["bearer"]["description"],
        })
    );
    assert_eq!(doc["security"], serde_json::json!([{ "bearer": [] }]));
    let problem = &doc["components"]["schemas"]["Problem"];
    for field in ["type", "title", "status", "detail", "code"] {
        assert!(
            problem["properties"].get(field).is_some(),
            "Problem lacks {field}"
        );
    }
    let unauthorized = &doc["components"]["responses"]["Unauthorized"];
    assert_eq!(
        unauthorized["content"]["application/problem+json"]["schema"]["$ref"],
        "#/components/schemas/Problem"
    );
    for (method, path) in ROUTES {
        let op = &doc["paths"][*path][*method];
        assert_eq!(
            op["responses"]["401"]["$ref"], "#/components/responses/Unauthorized",
            "{method} {path}"
        );
        assert!(op["summary"].is_string(), "{method} {path} has no summary");
        assert!(op["tags"][0].is_string(), "{method} {path} has no tag");
    }
}

/// The gateway serves the same document without a token, and each
/// documented operation reaches its handler (which then asks for a token)
/// rather than the 404 of an unknown endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_serves_the_document_and_every_operation_is_routed() {
    let dir = tempfile::tempdir().unwrap();
    shokai::pki::init(dir.path(), &["0001".to_owned()]).unwrap();
    let db = crate::support::sqlite_db();
    let gateway = Gateway::start(GatewayConfig {
        run_engine: false,
        ..crate::support::gateway_config(&db.url, dir.path())
    })
    .await
    .unwrap();
    let base = format!("http://{}", gateway.staff_addr.unwrap());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let resp = http
        .get(format!("{base}/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let served = resp.text().await.unwrap();
    assert!(
        served == shokai::http::openapi_json(),
        "/api/openapi.json differs from shokai::http::openapi_json()"
    );

    let doc = document();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            let mut url = format!(
                "{base}{}",
                path.replace("{id}", "0197c1f2a8e27d4c9b3f5a6e7d8c9b0a")
                    .replace("{alert}", "1")
                    .replace("{code}", "0001")
            );
            // Required query parameters, so the request gets past parsing.
            if path == "/api/v1/admin/batches" {
                url.push_str("?state=dead");
            }
            let method_name =
                reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = http.request(method_name, &url).send().await.unwrap();
            let status = resp.status().as_u16();
            let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
            let body: Value =
                serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or(Value::Null);
            assert_eq!(
                (status, content_type.as_str(), &body["code"]),
                (
                    401,
                    "application/problem+json",
                    &Value::from("unauthorized")
                ),
                "{} {path}: not routed to a staff handler",
                method.to_uppercase()
            );
        }
    }
    gateway.stop().await;
}
