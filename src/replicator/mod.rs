//! The replicator: copies source partitions to mirror partitions with identical
//! offsets. So far the per-partition copier (fast path); links, mirror states and the
//! metadata topic build on it.

pub mod link_config;
pub mod partition;
