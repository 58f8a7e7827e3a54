//! Shokai: an open deposit-inquiry gateway for Japanese welfare offices.
//! See ARCHITECTURE.md for the map of the rooms below.

pub mod domain;
pub mod iso20022;
pub mod store;
