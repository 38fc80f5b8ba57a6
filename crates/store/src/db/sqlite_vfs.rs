//! A VFS over SQLite's default one that splits large writes to temporary
//! files (statement journals, temp databases).
//!
//! Why: the writer keeps each job's statement journal in memory in one
//! chunk of `SQLITE_STMTJRNL_SPILL` bytes (8 MB, `.cargo/config.toml`);
//! a larger journal spills to a temp file, and SQLite writes the chunk there
//! in one call. The unix VFS writes at most 128 KiB - 1 bytes per call (it
//! masks the length), so the spill failed as "database or disk is full" and
//! the job with it. A spill of 128 KiB would fit, but then most bulk jobs
//! spill, at two system calls per journaled page (measured: writer time per
//! delivery 43–57 → 55–67 µs); an unbounded in-memory journal uses 1 KB
//! chunks (+3–7 µs).
//! Every other file is the default VFS's own, untouched.

use rusqlite::ffi;
use std::os::raw::{c_char, c_int, c_void};

/// The most the unix VFS writes in one call.
const MAX_WRITE: c_int = 0x1ffff;

/// Files opened with these flags get [`METHODS`].
const SPLIT: c_int =
    ffi::SQLITE_OPEN_SUBJOURNAL | ffi::SQLITE_OPEN_TEMP_JOURNAL | ffi::SQLITE_OPEN_TEMP_DB;

/// A wrapped file is our `sqlite3_file` header followed by the default
/// VFS's own file structure, at this offset (8-byte aligned).
const HEADER: usize = std::mem::size_of::<ffi::sqlite3_file>().next_multiple_of(8);

/// Installs the VFS as the process's default, once, before any connection
/// opens. Returns SQLite's result code of the registration.
pub fn install() -> c_int {
    static RC: std::sync::OnceLock<c_int> = std::sync::OnceLock::new();
    *RC.get_or_init(|| {
        // SAFETY: `sqlite3_vfs_find(NULL)` returns the default VFS (it
        // initializes SQLite first), which lives for the process. The copy
        // is leaked, so it lives for the process too, as registration needs.
        unsafe {
            let inner = ffi::sqlite3_vfs_find(std::ptr::null());
            if inner.is_null() {
                return ffi::SQLITE_ERROR;
            }
            let Ok(size) = c_int::try_from(HEADER) else {
                return ffi::SQLITE_ERROR;
            };
            let mut vfs = *inner;
            vfs.szOsFile += size;
            vfs.pNext = std::ptr::null_mut();
            vfs.zName = c"outflow-split-writes".as_ptr();
            vfs.pAppData = inner.cast::<c_void>();
            vfs.xOpen = Some(open);
            ffi::sqlite3_vfs_register(Box::into_raw(Box::new(vfs)), 1)
        }
    })
}

/// The default VFS's file inside a wrapped one.
///
/// # Safety
/// `f` must be a file opened by [`open`] with [`METHODS`].
unsafe fn inner(f: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: `open` gave the wrapped file `HEADER` + the inner size bytes.
    unsafe { f.cast::<u8>().add(HEADER).cast() }
}

/// The inner file's methods.
///
/// # Safety
/// As [`inner`]; the inner file is open (its methods are set).
unsafe fn methods(f: *mut ffi::sqlite3_file) -> &'static ffi::sqlite3_io_methods {
    // SAFETY: the default VFS's method tables are static.
    unsafe { &*(*inner(f)).pMethods }
}

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: `pAppData` is the default VFS (see `install`); SQLite gives
    // `file` our `szOsFile` bytes, enough for the header and the inner file.
    unsafe {
        let base = (*vfs).pAppData.cast::<ffi::sqlite3_vfs>();
        let Some(base_open) = (*base).xOpen else {
            return ffi::SQLITE_ERROR;
        };
        if flags & SPLIT == 0 {
            return base_open(base, name, file, flags, out_flags);
        }
        let wrapped = inner(file);
        (*wrapped).pMethods = std::ptr::null();
        let rc = base_open(base, name, wrapped, flags, out_flags);
        // SQLite calls xClose only when pMethods is set, and must then
        // reach the inner file's close even if its open failed.
        (*file).pMethods = if (*wrapped).pMethods.is_null() {
            std::ptr::null()
        } else {
            &METHODS
        };
        rc
    }
}

/// Version 1: no shared memory or memory mapping for these files.
static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// Calls the inner file's method `$m` with the inner file and `$args`.
macro_rules! forward {
    ($f:ident, $m:ident $(, $a:expr)*) => {
        // SAFETY: SQLite calls these only on files `open` wrapped.
        unsafe {
            match methods($f).$m {
                Some(m) => m(inner($f) $(, $a)*),
                None => ffi::SQLITE_IOERR,
            }
        }
    };
}

unsafe extern "C" fn write(
    f: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amt: c_int,
    off: i64,
) -> c_int {
    let mut done: c_int = 0;
    while done < amt {
        let n = (amt - done).min(MAX_WRITE);
        // SAFETY: `buf` holds `amt` bytes; `done + n <= amt`.
        let piece = unsafe { buf.cast::<u8>().add(done as usize) }.cast::<c_void>();
        let rc = forward!(f, xWrite, piece, n, off + i64::from(done));
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        done += n;
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn close(f: *mut ffi::sqlite3_file) -> c_int {
    forward!(f, xClose)
}

unsafe extern "C" fn read(
    f: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    off: i64,
) -> c_int {
    forward!(f, xRead, buf, amt, off)
}

unsafe extern "C" fn truncate(f: *mut ffi::sqlite3_file, size: i64) -> c_int {
    forward!(f, xTruncate, size)
}

unsafe extern "C" fn sync(f: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    forward!(f, xSync, flags)
}

unsafe extern "C" fn file_size(f: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    forward!(f, xFileSize, size)
}

unsafe extern "C" fn lock(f: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(f, xLock, level)
}

unsafe extern "C" fn unlock(f: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(f, xUnlock, level)
}

unsafe extern "C" fn check_reserved_lock(f: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    forward!(f, xCheckReservedLock, out)
}

unsafe extern "C" fn file_control(f: *mut ffi::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    forward!(f, xFileControl, op, arg)
}

unsafe extern "C" fn sector_size(f: *mut ffi::sqlite3_file) -> c_int {
    forward!(f, xSectorSize)
}

unsafe extern "C" fn device_characteristics(f: *mut ffi::sqlite3_file) -> c_int {
    forward!(f, xDeviceCharacteristics)
}
