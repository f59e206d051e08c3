//! Benchmark of the connection-string parsers and renderers, side by side
//! with libpq 17's own `PQconninfoParse` when it is available
//! (`$KNOCKER_LIBPQ17`, else `$KNOCKER_PG_CACHE/17/lib/libpq.so.5`, as
//! provisioned by `cargo xtask pg`).
//!
//! Run: `cargo bench -p pgctl --bench conninfo` (no extra crates: a plain
//! `harness = false` timing loop, median of 7 rounds).

use std::ffi::{c_char, c_void, CString};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pgctl::conninfo::ConnInfo;

const CASES: &[(&str, &str)] = &[
    ("uri-simple", "postgresql://knocknoc@localhost/knocknoc"),
    (
        "uri-full",
        "postgresql://knocknoc_remote:Zx9kLm2Pq%40@db1.example.com:5432,db2.example.com:5433,[2001:db8::1]/knocknoc?sslmode=verify-full&sslrootcert=%2Fetc%2Fssl%2Fca.pem&target_session_attrs=read-write&connect_timeout=10&application_name=knocker",
    ),
    ("kv-simple", "host=localhost dbname=knocknoc user=knocknoc"),
    (
        "kv-full",
        "host=db1.example.com,db2.example.com port=5432,5433 dbname=knocknoc user=knocknoc_remote password='it\\'s a \\\\ secret' sslmode=verify-full sslrootcert=/etc/ssl/ca.pem target_session_attrs=read-write connect_timeout=10 application_name=knocker options='-c statement_timeout=5s'",
    ),
];

fn median_ns_per_op(iters: u32, mut f: impl FnMut()) -> f64 {
    let mut rounds: Vec<Duration> = (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            start.elapsed()
        })
        .collect();
    rounds.sort();
    rounds[3].as_nanos() as f64 / f64::from(iters)
}

type ParseFn = unsafe extern "C" fn(*const c_char, *mut *mut c_char) -> *mut c_void;
type FreeFn = unsafe extern "C" fn(*mut c_void);

fn libpq() -> Option<(ParseFn, FreeFn, PathBuf)> {
    let path = std::env::var_os("KNOCKER_LIBPQ17")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("KNOCKER_PG_CACHE")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/var/cache/knocker-pg"))
                .join("17/lib/libpq.so.5")
        });
    let cpath = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: dlopen/dlsym with valid C strings; the library stays loaded for
    // the process lifetime, and the symbols have these C signatures.
    unsafe {
        let h = libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if h.is_null() {
            return None;
        }
        let parse = libc::dlsym(h, c"PQconninfoParse".as_ptr());
        let free = libc::dlsym(h, c"PQconninfoFree".as_ptr());
        if parse.is_null() || free.is_null() {
            return None;
        }
        Some((
            std::mem::transmute::<*mut c_void, ParseFn>(parse),
            std::mem::transmute::<*mut c_void, FreeFn>(free),
            path,
        ))
    }
}

fn main() {
    let iters = 20_000;
    let libpq = libpq();
    match &libpq {
        Some((_, _, path)) => println!("libpq reference: {}", path.display()),
        None => println!("libpq 17 not found (run `cargo xtask pg`): ours only"),
    }
    println!(
        "{:<11} {:>12} {:>12} {:>14} {:>12}",
        "case", "parse ns/op", "libpq ns/op", "to_uri ns/op", "to_kv ns/op"
    );
    for (name, s) in CASES {
        let info = ConnInfo::parse(s).expect("benchmark strings parse");
        let parse = median_ns_per_op(iters, || {
            black_box(ConnInfo::parse(black_box(s)).ok());
        });
        let theirs = libpq.as_ref().map(|(parse_fn, free_fn, _)| {
            let cs = CString::new(*s).expect("no NUL");
            median_ns_per_op(iters, || {
                // SAFETY: valid C string; the result is freed with PQconninfoFree.
                unsafe {
                    let opts = parse_fn(black_box(cs.as_ptr()), std::ptr::null_mut());
                    free_fn(opts);
                }
            })
        });
        let uri = median_ns_per_op(iters, || {
            black_box(info.to_uri());
        });
        let kv = median_ns_per_op(iters, || {
            black_box(info.to_keyword_value());
        });
        println!(
            "{:<11} {:>12.0} {:>12} {:>14.0} {:>12.0}",
            name,
            parse,
            theirs.map_or_else(|| "-".to_owned(), |t| format!("{t:.0}")),
            uri,
            kv
        );
    }
}
