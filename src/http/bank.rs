//! The bank API, `/bank/v1`, on its own mutual-TLS listener. The client
//! certificate names the institution; a bank sees and answers only its own
//! inquiries. Bodies and replies are our ISO 20022 profile's XML.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;

use super::{AppState, PeerCertificate};
use crate::casework;
use crate::domain::ids::BatchId;
use crate::domain::zengin::InstitutionCode;
use crate::iso20022::{self, AnswerBatchReceipt, AnswerResult, AnswerStatus, Limits};
use crate::store::ApplyOutcome;
use crate::tls::fingerprint;

pub const MAX_ANSWER_BATCH_BYTES: usize = 32 * 1024 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/bank/v1/answers", web::post().to(post_answers))
        .route("/bank/v1/batches", web::get().to(list_batches))
        .route("/bank/v1/batches/{id}", web::get().to(get_batch))
        .route("/bank/v1/batches/{id}/ack", web::post().to(ack_batch))
        .default_service(web::to(|| async { HttpResponse::NotFound().finish() }));
}

fn xml(status: StatusCode, body: Vec<u8>) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/xml; charset=utf-8")
        .body(body)
}

fn refuse(status: StatusCode, batch_id: &str, code: &str, text: &str) -> HttpResponse {
    tracing::warn!(
        status = status.as_u16(),
        reason = code,
        detail = text,
        "answer batch refused"
    );
    xml(
        status,
        iso20022::encode_answer_batch_receipt(&AnswerBatchReceipt {
            batch_id: if batch_id.is_empty() {
                "-".into()
            } else {
                batch_id.into()
            },
            rejection: Some((code.to_owned(), text.to_owned())),
            results: Vec::new(),
        }),
    )
}

/// The institution behind this connection's client certificate.
async fn institution(req: &HttpRequest, state: &AppState) -> Result<InstitutionCode, HttpResponse> {
    let Some(cert) = req.conn_data::<PeerCertificate>() else {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            "",
            "AUTH",
            "a client certificate is required",
        ));
    };
    match state
        .store
        .institution_for_certificate(&fingerprint(&cert.0))
        .await
    {
        Ok(Some(code)) => Ok(code),
        Ok(None) => Err(refuse(
            StatusCode::FORBIDDEN,
            "",
            "AUTH",
            "this client certificate is not registered for any institution",
        )),
        Err(e) => {
            tracing::error!(error = %e, "certificate lookup failed");
            Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "",
                iso20022::TRY_AGAIN_LATER,
                "try again later",
            ))
        }
    }
}

async fn read_capped(mut payload: web::Payload, cap: usize) -> Result<Vec<u8>, HttpResponse> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            refuse(
                StatusCode::BAD_REQUEST,
                "",
                "FRMT",
                &format!("reading the body: {e}"),
            )
        })?;
        if body.len() + chunk.len() > cap {
            return Err(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "",
                "SIZE",
                &format!("the body is larger than {cap} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn post_answers(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> HttpResponse {
    let institution = match institution(&req, &state).await {
        Ok(code) => code,
        Err(resp) => return resp,
    };
    let body = match read_capped(payload, MAX_ANSWER_BATCH_BYTES).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let limits = Limits {
        max_bytes: MAX_ANSWER_BATCH_BYTES,
        ..Limits::default()
    };
    // A full batch takes milliseconds to decode. On this worker thread it
    // would hold up the other requests' transactions waiting to be polled,
    // and on SQLite one of those holds the database's only write lock.
    let decoded =
        tokio::task::spawn_blocking(move || iso20022::decode_answer_batch(&body, &limits)).await;
    let batch = match decoded {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            return refuse(StatusCode::BAD_REQUEST, "", e.reason_code(), &e.to_string());
        }
        Err(e) => {
            tracing::error!(error = %e, "decoding an answer batch did not finish");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "",
                iso20022::TRY_AGAIN_LATER,
                "try again later",
            );
        }
    };
    if batch.institution != institution {
        return refuse(
            StatusCode::FORBIDDEN,
            &batch.batch_id,
            "INST",
            &format!(
                "the batch names institution {} but the certificate is {institution}'s",
                batch.institution
            ),
        );
    }
    // Readable answers are applied (and audited) together; unreadable ones
    // are refused in place, keeping the batch's order in the receipt.
    let readable: Vec<_> = batch
        .items
        .iter()
        .filter_map(|i| i.as_ref().ok().cloned())
        .collect();
    // None: the batch's transaction failed and nothing was filed; every
    // readable answer is then TEMP, and the store's idempotence makes the
    // bank's resend safe.
    let mut applied = match casework::receive_answers(&state.store, &institution, &readable).await {
        Ok(applied) => Some(applied.into_iter()),
        Err(e) => {
            tracing::error!(error = %e, institution = %institution, "applying an answer batch failed");
            None
        }
    };
    let mut results = Vec::with_capacity(batch.items.len());
    for item in batch.items {
        let result = match item {
            Err(e) => AnswerResult {
                response_id: e.response_id,
                inquiry_id: e.inquiry_id,
                status: AnswerStatus::Rejected {
                    reason_code: e.error.reason_code().to_owned(),
                    reason_text: e.error.to_string(),
                },
            },
            Ok(answer) => {
                let status = match applied
                    .as_mut()
                    .map(|a| a.next().expect("one result per readable answer"))
                {
                    Some(ApplyOutcome::Accepted { .. }) => AnswerStatus::Accepted,
                    Some(ApplyOutcome::Duplicate) => AnswerStatus::Duplicate,
                    Some(ApplyOutcome::Rejected { code, reason }) => AnswerStatus::Rejected {
                        reason_code: iso20022::answer_reason_code(code).to_owned(),
                        reason_text: format!("{code}: {reason}"),
                    },
                    None => AnswerStatus::Rejected {
                        reason_code: iso20022::TRY_AGAIN_LATER.into(),
                        reason_text: "try again later".into(),
                    },
                };
                AnswerResult {
                    response_id: answer.response_id,
                    inquiry_id: answer.inquiry_id.to_string(),
                    status,
                }
            }
        };
        results.push(result);
    }
    let accepted = results
        .iter()
        .filter(|r| r.status == AnswerStatus::Accepted)
        .count();
    tracing::info!(institution = %institution, batch = %batch.batch_id, answers = results.len(), accepted, "answer batch");
    xml(
        StatusCode::OK,
        iso20022::encode_answer_batch_receipt(&AnswerBatchReceipt {
            batch_id: batch.batch_id,
            rejection: None,
            results,
        }),
    )
}

#[derive(serde::Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
}

/// Pull channel: the batches waiting for this bank.
async fn list_batches(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> HttpResponse {
    let institution = match institution(&req, &state).await {
        Ok(code) => code,
        Err(resp) => return resp,
    };
    if query.status.as_deref().is_some_and(|s| s != "pending") {
        return refuse_batch(
            StatusCode::BAD_REQUEST,
            "",
            "FRMT",
            "status must be 'pending'",
        );
    }
    match state
        .store
        .pending_pull_batches(&institution, query.limit.unwrap_or(100).clamp(1, 1000))
        .await
    {
        Ok(rows) => {
            let listed: Vec<_> = rows
                .iter()
                .map(|b| iso20022::PendingBatch {
                    batch_id: b.id.to_string(),
                    created_at_ms: b.created_at,
                    count: b.inquiry_count.max(0) as u64,
                })
                .collect();
            xml(
                StatusCode::OK,
                iso20022::encode_pending_batches(&institution, &listed),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "listing pull batches failed");
            refuse_batch(
                StatusCode::SERVICE_UNAVAILABLE,
                "",
                iso20022::TRY_AGAIN_LATER,
                "try again later",
            )
        }
    }
}

/// A refusal on the pull endpoints, as a batch receipt.
fn refuse_batch(status: StatusCode, batch_id: &str, code: &str, text: &str) -> HttpResponse {
    tracing::warn!(
        status = status.as_u16(),
        reason = code,
        detail = text,
        "pull request refused"
    );
    xml(
        status,
        iso20022::encode_batch_receipt(&iso20022::BatchReceipt {
            batch_id: if batch_id.is_empty() {
                "-".into()
            } else {
                batch_id.into()
            },
            accepted: false,
            reason_code: Some(code.to_owned()),
            reason_text: Some(text.to_owned()),
            count: None,
        }),
    )
}

fn unknown_batch(id: &str) -> HttpResponse {
    refuse_batch(
        StatusCode::NOT_FOUND,
        id,
        "UNKN",
        "no such batch for this institution",
    )
}

fn try_later(id: &str) -> HttpResponse {
    refuse_batch(
        StatusCode::SERVICE_UNAVAILABLE,
        id,
        iso20022::TRY_AGAIN_LATER,
        "try again later",
    )
}

/// Pull channel: one batch, the same bytes a push bank would receive.
async fn get_batch(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let institution = match institution(&req, &state).await {
        Ok(code) => code,
        Err(resp) => return resp,
    };
    let Ok(id) = BatchId::parse(&id) else {
        return unknown_batch("");
    };
    match state.store.batch_payload(&institution, &id).await {
        Ok(Some(payload)) if !payload.is_empty() => xml(StatusCode::OK, payload),
        Ok(_) => unknown_batch(id.as_str()),
        Err(e) => {
            tracing::error!(error = %e, "reading a pull batch failed");
            try_later(id.as_str())
        }
    }
}

/// Pull channel: the bank confirms it has the batch; the reply is the same
/// receipt a push bank would send.
async fn ack_batch(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let institution = match institution(&req, &state).await {
        Ok(code) => code,
        Err(resp) => return resp,
    };
    let Ok(id) = BatchId::parse(&id) else {
        return unknown_batch("");
    };
    match state
        .store
        .acknowledge_pulled_batch(&institution, &id, crate::domain::time::now_millis())
        .await
    {
        Ok(first) => {
            if first {
                crate::metrics::inc(
                    "shokai_delivery_attempts_total",
                    "Delivery attempts by institution and outcome.",
                    &[("institution", institution.as_str()), ("outcome", "pulled")],
                );
                tracing::info!(batch = %id, institution = %institution, "batch pulled");
            }
            xml(
                StatusCode::OK,
                iso20022::encode_batch_receipt(&iso20022::BatchReceipt {
                    batch_id: id.to_string(),
                    accepted: true,
                    reason_code: None,
                    reason_text: None,
                    count: None,
                }),
            )
        }
        Err(crate::store::StoreError::NotFound(_)) => unknown_batch(id.as_str()),
        Err(crate::store::StoreError::Conflict(why)) => {
            refuse_batch(StatusCode::CONFLICT, id.as_str(), "STAT", &why)
        }
        Err(e) => {
            tracing::error!(error = %e, "acknowledging a pull batch failed");
            try_later(id.as_str())
        }
    }
}
