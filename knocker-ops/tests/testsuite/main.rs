//! knocker-ops's integration tests, one module per area, in one test
//! binary: one link of the crate and its dependencies instead of one per
//! file (as cargo's own `tests/testsuite/`). `tests/block_cases/` holds
//! the block planner's cases.

mod common;

mod autofailover_debian_pg15;
mod autofailover_partition_pg15;
mod autofailover_pg15;
mod block_cases;
mod example_exposedb;
mod failover_fence;
mod failover_reclone;
mod failover_switchover;
mod kill9;
mod replica;
mod replica_clone;
mod replica_netns;
