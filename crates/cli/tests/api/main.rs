//! Integration tests: each starts the real `metricsd` binary on an ephemeral port with a
//! temporary data directory and drives it over HTTP.

mod abuse;
mod bad_input;
mod clock;
mod durability;
mod operating;
mod promapi;
mod prometheus;
mod promql_compat;
mod protect;
mod remote_write;
mod seed;
mod semantics;
mod tenants;
mod tracing;
mod util;
