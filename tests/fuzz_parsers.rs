//! Fuzzing the GGUF and safetensors header parsers with proptest: mutated real headers and random
//! bytes never panic, and no single allocation made while parsing exceeds the input's size (plus a small
//! fixed slack for the parser's own bookkeeping). `PRISM_FUZZ_CASES` sets the number of inputs (CI: a
//! few thousand; the long run in the closing note: millions).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Records the largest single allocation made by this thread while `TRACKING` is set.
struct Tracking;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarding the caller's layout to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarding a valid realloc request.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note(size: usize) {
    // try_with: the thread-locals may be gone during thread teardown.
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// Fixed allowance for the parsers' own small tables (hash maps, error strings).
const SLACK: usize = 64 << 10;

/// Runs `parse` on `bytes`; fails if one allocation exceeded `bytes.len()` times `factor` plus the slack.
fn check_bounded(bytes: &[u8], factor: usize, parse: impl FnOnce(&[u8])) -> Result<(), TestCaseError> {
    LARGEST.with(|l| l.set(0));
    TRACKING.with(|t| t.set(true));
    parse(bytes);
    TRACKING.with(|t| t.set(false));
    let largest = LARGEST.with(|l| l.get());
    prop_assert!(
        largest <= bytes.len() * factor + SLACK,
        "parsing {} bytes allocated {largest} at once",
        bytes.len()
    );
    Ok(())
}

fn seed(rel: &str, limit: usize) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared").join(rel);
    let mut b = std::fs::read(p).unwrap();
    b.truncate(limit);
    b
}

/// A mutation of `base`: overwrite 8-byte words (counts, lengths, offsets) with extreme values, flip
/// bytes, cut the tail.
fn mutated(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = base.len();
    let words = prop::collection::vec(
        (0..len, prop_oneof![Just(u64::MAX), Just(u64::MAX / 2), Just(1u64 << 32), 0..4096u64, any::<u64>()]),
        0..4,
    );
    let flips = prop::collection::vec((0..len, any::<u8>()), 0..8);
    (words, flips, 0..=len).prop_map(move |(words, flips, cut)| {
        let mut b = base.clone();
        for (at, v) in words {
            let end = (at + 8).min(b.len());
            b[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
        }
        for (at, v) in flips {
            b[at] ^= v;
        }
        b.truncate(cut.max(4));
        b
    })
}

fn cases() -> u32 {
    std::env::var("PRISM_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3000)
}

fn runner() -> TestRunner {
    TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() })
}

#[test]
fn gguf_parser_never_panics_nor_overallocates() {
    // The header of stories260K's GGUF: metadata of many types, the tokenizer arrays, the tensor table.
    let base = seed("models/stories260K/stories260K.gguf", 24 << 10);
    let random = prop::collection::vec(any::<u8>(), 0..512).prop_map(|mut v| {
        let mut b = b"GGUF\x03\0\0\0".to_vec();
        b.append(&mut v);
        b
    });
    let strategy = prop_oneof![4 => mutated(base), 1 => random];
    // A metadata `Value` takes up to 32 bytes in memory for a 1-byte array element on disk.
    let inputs = AtomicU64::new(0);
    runner()
        .run(&strategy, |bytes| {
            inputs.fetch_add(1, Ordering::Relaxed);
            check_bounded(&bytes, 32, |b| {
                let _ = prism::engine::gguf::Gguf::parse(b);
            })
        })
        .unwrap();
    eprintln!("gguf: {} inputs", inputs.load(Ordering::Relaxed));
}

#[test]
fn safetensors_parser_never_panics_nor_overallocates() {
    let base = seed("models/stories260K/model.safetensors", 8 << 10);
    let random = prop::collection::vec(any::<u8>(), 0..512);
    let json_header = "[{}\"0-9a-z_:,. ]{0,200}".prop_map(|h: String| {
        let mut b = (h.len() as u64).to_le_bytes().to_vec();
        b.extend(h.as_bytes());
        b
    });
    let strategy = prop_oneof![4 => mutated(base), 1 => random, 1 => json_header];
    let inputs = AtomicU64::new(0);
    runner()
        .run(&strategy, |bytes| {
            inputs.fetch_add(1, Ordering::Relaxed);
            check_bounded(&bytes, 4, |b| {
                let _ = prism::engine::loader::check_safetensors(b);
            })
        })
        .unwrap();
    eprintln!("safetensors: {} inputs", inputs.load(Ordering::Relaxed));
}
