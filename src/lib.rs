//! Shokai: an open deposit-inquiry gateway for Japanese welfare offices.
//! See ARCHITECTURE.md for the map of the rooms below.

pub mod accounts;
pub mod admin;
pub mod bench;
pub mod casework;
pub mod child;
pub mod conformance;
pub mod connectors;
pub mod csv;
pub mod delivery;
pub mod demo;
pub mod domain;
pub mod gateway;
pub mod http;
pub mod iso20022;
pub mod metrics;
pub mod mockbank;
pub mod mockdept;
pub mod pki;
pub mod store;
pub mod tls;
