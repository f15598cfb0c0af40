//! mirrorgate: a Kafka proxy in front of a destination cluster that keeps mirror topics
//! read-only, and a replicator that copies source topics to them offset for offset.
//!
//! Data flow: `proxy` (listener -> connection -> interceptors) reads decisions from the
//! `registry` snapshot; `replicator` (links -> per-broker fetchers -> per-partition
//! copiers -> one produce connection per destination broker, plus each link's sync jobs) publishes which topics
//! are mirrors into that registry; `kafka` holds the wire plumbing both use; `admin`
//! serves the REST API, metrics and the CLI that calls it; `config` and `tls` feed them.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod config;
pub mod kafka;
pub mod proxy;
pub mod registry;
pub mod replicator;
pub mod tls;
