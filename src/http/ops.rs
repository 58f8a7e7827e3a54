//! Operator endpoints on the staff listener: `/healthz` (the process is
//! up), `/readyz` (it can do its job) and `/metrics` (Prometheus).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use serde_json::json;
use tracing::Instrument;

use super::{AppState, CERTIFICATE_WARNING_DAYS};
use crate::domain::time::now_millis;
use crate::metrics::{self, Gauge};
use crate::store::Store;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/healthz",
        web::get().to(|| async { HttpResponse::Ok().body("ok") }),
    )
    .route("/readyz", web::get().to(readyz))
    .route("/metrics", web::get().to(metrics_endpoint));
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut problems = Vec::new();
    match state.store.applied_migrations().await {
        Ok(applied) if applied.last().copied() == Some(Store::latest_migration()) => {}
        Ok(applied) => problems.push(format!(
            "migrations: {:?} applied, {} expected",
            applied.last(),
            Store::latest_migration()
        )),
        Err(e) => problems.push(format!("database: {}", e.code())),
    }
    let soon = now_millis() + CERTIFICATE_WARNING_DAYS * 86_400_000;
    for (name, expires) in state.certificates.read().expect("certificates lock").iter() {
        if *expires < soon {
            problems.push(format!(
                "certificate {name} expires {}",
                crate::domain::time::rfc3339(*expires)
            ));
        }
    }
    let body = json!({ "ready": problems.is_empty(), "problems": problems });
    if problems.is_empty() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics_endpoint(state: web::Data<AppState>) -> HttpResponse {
    let now = now_millis();
    let mut gauges = Vec::new();
    match state.store.queue_gauges(now).await {
        Ok(q) => {
            for (inst, st, n) in &q.inquiries {
                gauges.push(Gauge {
                    name: "shokai_inquiries",
                    help: "Inquiries by institution and state.",
                    labels: vec![("institution", inst.clone()), ("state", st.clone())],
                    value: *n as f64,
                });
            }
            for (inst, st, n) in &q.batches {
                gauges.push(Gauge {
                    name: "shokai_batches",
                    help: "Batches by institution and state.",
                    labels: vec![("institution", inst.clone()), ("state", st.clone())],
                    value: *n as f64,
                });
            }
            for (inst, age) in &q.oldest_waiting {
                gauges.push(Gauge {
                    name: "shokai_oldest_waiting_seconds",
                    help: "Age of the oldest inquiry without an answer.",
                    labels: vec![("institution", inst.clone())],
                    value: *age as f64 / 1000.0,
                });
            }
            for (inst, failures, open) in &q.breakers {
                gauges.push(Gauge {
                    name: "shokai_circuit_open",
                    help: "1 while an institution's circuit breaker is open.",
                    labels: vec![("institution", inst.clone())],
                    value: f64::from(u8::from(*open)),
                });
                gauges.push(Gauge {
                    name: "shokai_consecutive_failures",
                    help: "Failed deliveries in a row, per institution.",
                    labels: vec![("institution", inst.clone())],
                    value: *failures as f64,
                });
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: queue gauges unavailable"),
    }
    match state.store.feed_counts().await {
        Ok(c) => {
            for (st, n) in [
                ("pending", c.pending),
                ("delivered", c.delivered),
                ("dead", c.dead),
            ] {
                gauges.push(Gauge {
                    name: "shokai_feed_events",
                    help: "Case-file feed events by delivery state.",
                    labels: vec![("state", st.to_owned())],
                    value: n as f64,
                });
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: feed counts unavailable"),
    }
    for (name, expires) in state.certificates.read().expect("certificates lock").iter() {
        gauges.push(Gauge {
            name: "shokai_certificate_expiry_seconds",
            help: "Seconds until a certificate this process presents expires.",
            labels: vec![("certificate", name.clone())],
            value: (expires - now) as f64 / 1000.0,
        });
    }
    if let Some(held) = state.store.writer_held_seconds() {
        gauges.push(Gauge {
            name: "shokai_sqlite_writer_held_seconds",
            help: "Seconds this process has held SQLite's write lock since it started; \
                   a rate near 1 means the single writer is the limit.",
            labels: Vec::new(),
            value: held,
        });
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics::render(&gauges))
}

async fn measure(
    listener: &'static str,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    // Route patterns, not paths: ids in paths would explode the series.
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    // A fixed set: any token is a valid HTTP method, and a label per
    // stranger's invention would grow the registry without bound.
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS") => m,
        _ => "other",
    }
    .to_owned();
    let span = tracing::info_span!(
        "http",
        listener,
        method = %method,
        route = %route,
        request_id = %uuid::Uuid::now_v7().simple()
    );
    let res = next.call(req).instrument(span).await?;
    let status = res.status().as_u16().to_string();
    let labels = [
        ("listener", listener),
        ("method", method.as_str()),
        ("route", route.as_str()),
        ("status", status.as_str()),
    ];
    metrics::inc(
        "shokai_http_requests_total",
        "HTTP requests by listener, route and status.",
        &labels,
    );
    metrics::observe(
        "shokai_http_request_duration_seconds",
        "HTTP request durations.",
        &[("listener", listener), ("route", route.as_str())],
        started.elapsed().as_secs_f64(),
    );
    Ok(res)
}

pub async fn measure_staff(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    measure("staff", req, next).await
}

pub async fn measure_bank(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    measure("bank", req, next).await
}
