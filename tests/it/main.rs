//! The one integration-test binary. Tests that touch a database run once on
//! SQLite and, when SHOKAI_TEST_DATABASE_URL is set, once on PostgreSQL,
//! each in a database of its own (`NAME::sqlite` / `NAME::postgres` in the output).

mod support;

mod admin;
mod audit;
mod chaos;
mod conformance;
mod e2e;
mod hostile;
mod ops;
mod pull;
mod retention;
mod schemas;
mod store;
mod tls;
