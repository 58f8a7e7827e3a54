//! The one integration-test binary. Tests that touch a database run once on
//! SQLite and, when SHOKAI_TEST_DATABASE_URL is set, once on PostgreSQL,
//! each in a database of its own (`NAME::sqlite` / `NAME::postgres` in the output).

mod support;

mod admin;
mod audit;
mod bench;
mod chaos;
mod conformance;
mod departments;
mod deploy;
mod e2e;
mod hostile;
mod openapi;
mod ops;
mod pull;
mod reload;
mod retention;
mod schemas;
mod store;
mod tls;
mod ui;
mod webdriver;
