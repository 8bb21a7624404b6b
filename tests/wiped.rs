//! Freed memory is scanned for a refresh token (issue 15, "fewer plaintext
//! copies"): a global allocator that, while scanning is on, looks into every
//! block before it is freed. What this shows: snykey's own serialization of
//! secret-bearing values (the file store's document, journal entries,
//! OpenBao request maps) leaves no copy in memory it frees. What it cannot
//! show: copies made inside hyper, reqwest, vaultrs or the kernel; those
//! buffers are not ours to wipe.

use snykey::secret::Secret;
use snykey::store::Record;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const NEEDLE: &[u8] = b"rt-NEEDLE-5d1c0ffee7a9b3";

static SCANNING: AtomicBool = AtomicBool::new(false);
static HITS: AtomicUsize = AtomicUsize::new(0);
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

struct Scanner;

unsafe impl GlobalAlloc for Scanner {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if SCANNING.load(Ordering::SeqCst) && layout.size() >= NEEDLE.len() {
            // SAFETY: the block is still ours until System.dealloc below.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            if block.windows(NEEDLE.len()).any(|w| w == NEEDLE) {
                HITS.fetch_add(1, Ordering::SeqCst);
            }
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Scanner = Scanner;

/// Runs `f` with scanning on; returns how many freed blocks held the needle.
fn freed_copies(f: impl FnOnce()) -> usize {
    HITS.store(0, Ordering::SeqCst);
    SCANNING.store(true, Ordering::SeqCst);
    f();
    SCANNING.store(false, Ordering::SeqCst);
    HITS.load(Ordering::SeqCst)
}

fn record() -> Record {
    let needle = std::str::from_utf8(NEEDLE).unwrap();
    Record {
        refresh_token: Some(Secret::new(needle)),
        // Big enough that any buffer grows after the token was written.
        private_key_pem: Some(Secret::new("K".repeat(20_000))),
        ..Default::default()
    }
}

#[test]
fn serialized_secrets_leave_no_copy_in_freed_memory() {
    let _one = ONE_AT_A_TIME.lock().unwrap();
    let r = record();
    // The scanner sees what a plain Vec leaves behind (so this test can fail).
    let plain = freed_copies(|| drop(serde_json::to_vec(&r).unwrap()));
    assert!(plain > 0, "the scanner saw no copy from serde_json::to_vec");
    let wiped = freed_copies(|| {
        let bytes = snykey::secret::to_json_wiped(&r).unwrap();
        assert!(bytes.windows(NEEDLE.len()).any(|w| w == NEEDLE));
        drop(bytes);
    });
    assert_eq!(
        wiped, 0,
        "to_json_wiped left a copy of the token in freed memory"
    );
    // The growth path by hand, in small writes.
    let wiped = freed_copies(|| {
        let mut b = snykey::secret::WipingBuf::with_capacity(4);
        for _ in 0..100 {
            b.extend(NEEDLE);
        }
        drop(b);
    });
    assert_eq!(wiped, 0, "WipingBuf left a copy behind while growing");
    drop(r);
}

#[test]
fn a_json_value_with_secrets_is_wiped_before_it_is_freed() {
    let _one = ONE_AT_A_TIME.lock().unwrap();
    let r = record();
    let mut plain = serde_json::to_value(&r).unwrap();
    let plain_hits = freed_copies(|| drop(std::mem::take(&mut plain)));
    assert!(
        plain_hits > 0,
        "the scanner saw no copy in a dropped JSON value"
    );
    let mut v = serde_json::to_value(&r).unwrap();
    let wiped = freed_copies(|| {
        snykey::secret::wipe_json(&mut v);
        drop(std::mem::take(&mut v));
    });
    assert_eq!(
        wiped, 0,
        "wipe_json left a copy of the token in freed memory"
    );
    drop(r);
}
