//! `knocker`: command-line tools for a shared Knocknoc PostgreSQL.
//!
//! This file only chooses the allocator, parses the command line and hands
//! it to the library (`src/lib.rs`: the clap definitions and the dispatch,
//! also used by `cargo xtask dist` for man pages and completions).

// mimalloc: pghba's document model and the JSON rows allocate per line; a
// 100k-rule `hba lint --json` uses ~15% less CPU than with glibc malloc
// (10% less than mimalloc without transparent huge pages, which would save
// ~6 MB RSS and ~0.8 ms per start; glibc malloc saves ~2.5 ms), and a
// 10k-rule `exposedb --add` took
// 212 ms instead of 228 (no THP) or 247 (glibc) in `cargo xtask bench
// exposedb` (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    knocker_cli::run(knocker_cli::Cli::parse())
}
