//! Kafka protocol plumbing shared by the proxy and the replicator: wire framing, the
//! body codec for frames we must look into, and a small client for our own calls.

/// ACLs: bindings, Confluent's filters, describe/create/delete.
pub mod acls;
pub mod admin;
pub mod backoff;
pub mod batch_rewrite;
pub mod client;
pub mod codec;
#[cfg(test)]
mod codec_hostile_tests;
pub mod compression;
#[cfg(test)]
mod decode_bounds_tests;
/// Kafka's error codes by name.
pub mod error_code;
pub mod fetch_scan;
#[cfg(test)]
mod fetch_scan_tests;
pub mod fetch_tail;
pub mod filler;
#[cfg(test)]
mod filler_tests;
pub mod frame;
pub mod frame_budget;
pub mod frame_writer;
pub mod groups;
/// A connection kept between the rounds of a periodic job.
pub mod kept;
/// Fleet membership: instances share shards of work through Kafka's group protocol.
pub mod membership;
#[cfg(test)]
mod membership_tests;
/// End offsets of a whole topic from its leaders.
pub mod offsets;
pub mod produce_scan;
#[cfg(test)]
mod produce_scan_tests;
pub mod producer;
pub mod record_batch;
#[cfg(test)]
mod record_batch_tests;
pub mod record_codec;
pub mod sasl;
#[cfg(test)]
mod test_rng;
/// Calls to a transaction coordinator on behalf of a client's transaction.
pub mod transactions;
pub mod transport;
pub mod wire_scan;
