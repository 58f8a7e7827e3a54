//! The case-file feed: events that tell the welfare case-management system
//! that a case file changed. They carry ids, never personal data; the
//! receiver reads the case file through the API for the details.

use super::DomainError;
use super::ids::{CaseId, EventId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedKind {
    /// A bank answer was filed (`subject_ref`: inquiry id and revision).
    AnswerFiled,
    /// An alert was raised on the case (`subject_ref`: alert id).
    AlertRaised,
    /// A caseworker acknowledged an alert (`subject_ref`: alert id).
    AlertAcknowledged,
    /// A comprehensive inquiry or re-query finished (`subject_ref`: run id).
    DepartmentInquiryCompleted,
}

impl FeedKind {
    pub const ALL: [FeedKind; 4] = [
        Self::AnswerFiled,
        Self::AlertRaised,
        Self::AlertAcknowledged,
        Self::DepartmentInquiryCompleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AnswerFiled => "answer.filed",
            Self::AlertRaised => "alert.raised",
            Self::AlertAcknowledged => "alert.acknowledged",
            Self::DepartmentInquiryCompleted => "department_inquiry.completed",
        }
    }

    pub fn parse(raw: &str) -> Result<FeedKind, DomainError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == raw)
            .ok_or_else(|| DomainError::new("invalid_feed_kind", format!("unknown event '{raw}'")))
    }
}

/// One event as it is sent: the same fields, hence the same bytes, on every
/// attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEvent {
    pub id: EventId,
    pub kind: FeedKind,
    pub case: CaseId,
    pub subject_ref: String,
    pub occurred_at: i64,
}
