//! Parsing and editing speed of knocknoc.conf (`cargo bench -p knocknoc-conf`).
//!
//! A small std-only harness (no criterion, which stays out of the test
//! build): each case runs for about a second and prints the median time per
//! iteration over 15 rounds.

use std::hint::black_box;
use std::time::{Duration, Instant};

use knocknoc_conf::{DatabaseUrl, Document};

const TYPICAL: &str = "\
# Knocknoc server configuration
Listen = 127.0.0.1:8756
TrustedForwarders = [\"127.0.0.1/32\", \"10.0.0.0/8\"]
CustomScripts = true   # allow custom scripts
DatabaseURL = \"postgres://knocknoc:c2VjcmV0@db.example:5432/knocknoc?sslmode=require\"
LogLevel = 'info'
";

fn bench(name: &str, bytes: usize, mut f: impl FnMut()) {
    // Calibrate: iterations per round so that a round takes ~70 ms.
    let mut per_round = 1u64;
    loop {
        let started = Instant::now();
        for _ in 0..per_round {
            f();
        }
        if started.elapsed() > Duration::from_millis(70) {
            break;
        }
        per_round *= 2;
    }
    let mut rounds: Vec<f64> = (0..15)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..per_round {
                f();
            }
            started.elapsed().as_secs_f64() / per_round as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    let median = rounds[rounds.len() / 2];
    let throughput = bytes as f64 / median / 1e6;
    println!(
        "{name:<40} {:>12.3} µs/iter {throughput:>10.1} MB/s",
        median * 1e6
    );
}

fn main() {
    let big_file: String = (0..2000)
        .map(|i| format!("Key{i} = \"value {i} # not a comment\"  # comment {i}\n"))
        .collect();
    let megabyte_line = format!("DatabaseURL = \"{}\"\n", "x".repeat(1 << 20));

    bench("parse typical (6 lines)", TYPICAL.len(), || {
        black_box(Document::parse(black_box(TYPICAL)));
    });
    bench("parse 2000 lines", big_file.len(), || {
        black_box(Document::parse(black_box(&big_file)));
    });
    bench("parse one 1 MiB line", megabyte_line.len(), || {
        black_box(Document::parse(black_box(&megabyte_line)));
    });
    let doc = Document::parse(TYPICAL);
    bench("settings() typical", TYPICAL.len(), || {
        black_box(black_box(&doc).settings().unwrap());
    });
    let url = DatabaseUrl::new("host=db password='p a#ss' dbname=knocknoc").unwrap();
    bench("set DatabaseURL + to_bytes typical", TYPICAL.len(), || {
        let mut doc = doc.clone();
        doc.set_database_url(black_box(&url)).unwrap();
        black_box(doc.to_bytes());
    });
}
