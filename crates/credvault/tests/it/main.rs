//! The integration tests, one binary (one link, one process per test under nextest): each
//! module is a suite; `common` starts the real `credvault` binary and talks to it over HTTP.
//! The suites that need servers are behind the crate's features (`postgres-tests`,
//! `moto-tests`, `server-tests`, `browser-tests`, `airflow-tests`): without them plain
//! `cargo test` leaves those tests out; with them a missing server fails the test.

// Tests print their progress and may block their own threads.
#![allow(clippy::disallowed_macros, clippy::disallowed_methods)]

#[macro_use]
mod common;

mod api;
mod authz;
mod bad_input;
mod canary;
mod checkpoints;
mod cli;
mod connections;
mod crash;
mod destinations;
mod hardening;
mod keys;
mod lifecycle;
mod oauth;
mod oauth_races;
mod siem;
mod siem_tls;
mod store_conformance;
mod testconn;
mod testers_cloud;
mod testers_db;
mod testers_proto;
mod token_cache;
mod ui;
mod ui_browser;
