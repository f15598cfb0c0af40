//! mirrorgate: a Kafka proxy in front of a destination cluster that keeps mirror topics
//! read-only, with (in later parts) a replicator that copies topics offset for offset.
//!
//! Data flow: `proxy` (listener -> connection -> interceptors) reads decisions from the
//! `registry` snapshot; `kafka` holds the wire plumbing both use; `admin` serves HTTP.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod config;
pub mod kafka;
pub mod proxy;
pub mod registry;
pub mod replicator;
pub mod tls;
