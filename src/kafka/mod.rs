//! Kafka protocol plumbing shared by the proxy and the replicator: wire framing, the
//! body codec for frames we must look into, and a small client for our own calls.

pub mod client;
pub mod codec;
pub mod frame;
pub mod sasl;
pub mod transport;
