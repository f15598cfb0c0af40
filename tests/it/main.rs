//! The integration tests: one binary, a module per area. Every test drives the real
//! `mirrorgate` binary against real Kafka brokers started by `testbed/kafka`, and where
//! a user would, real clients (Kafka's Java tools, kcat, the client matrix).
//!
//! Clusters are shared by the whole run (unique topic names keep tests apart). Tests
//! that stop brokers use clusters of their own, one test at a time
//! (`common::broker_restarts`), so they never disturb the others.

mod common;

mod acl_sync;
mod admin_security;
mod admin_status_page;
mod client_matrix;
mod conditional_append;
mod cutover;
mod cutover_transactions;
mod failback;
mod fleet_catalog;
mod fleet_copy;
mod fleet_membership;
mod produce_forward;
mod proxy_clients;
mod proxy_discovery;
mod proxy_hostile;
mod proxy_metrics;
mod proxy_protocol;
mod proxy_read_only;
mod proxy_reload;
mod proxy_robustness;
mod proxy_tls;
mod proxy_upstream_security;
mod replicator_auto_create;
mod replicator_conditional;
mod replicator_config_sync;
mod replicator_fillers;
mod replicator_group_offsets;
mod replicator_idle;
mod replicator_lifecycle;
mod replicator_offset_sync;
mod replicator_partition;
mod replicator_pipeline;
mod replicator_restarts;
mod replicator_start_offset;
mod replicator_throttle;
mod secured_sources;
mod walkthrough;
