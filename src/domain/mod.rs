//! The pure core: types and rules with no IO, no async and no SQL.
//!
//! Everything here can be unit- and property-tested in isolation; the
//! services around it (store, delivery, casework, http) only orchestrate.

pub mod answer;
pub mod audit;
pub mod breaker;
pub mod department;
pub mod error;
pub mod feed;
pub mod ids;
pub mod kana;
pub mod request;
pub mod retry;
pub mod state;
pub mod time;
pub mod window;
pub mod zengin;

pub use error::DomainError;
