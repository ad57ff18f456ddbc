//! Which GPU backends a test can run here: a backend that cannot start is reported (the reason is
//! printed) and skipped, unless `PRISM_REQUIRE_<NAME>=1` (e.g. `PRISM_REQUIRE_WGPU`, set by
//! `scripts/test.sh` where CI installs lavapipe) turns that into a failure.

#![allow(dead_code)]

use prism::backend::{BackendKind, BackendOptions, create};

/// Whether backend `kind` starts here; panics if it does not but is required.
pub fn available(kind: BackendKind) -> bool {
    match create(kind, BackendOptions { device: 0, threads: 2 }) {
        Ok(_) => true,
        Err(e) => {
            let var = format!("PRISM_REQUIRE_{}", kind.name().to_uppercase());
            if std::env::var(&var).as_deref() == Ok("1") {
                panic!("{var}=1 but the {} backend does not start: {e}", kind.name());
            }
            eprintln!("SKIPPED on {}: {e} (set {var}=1 to make this a failure)", kind.name());
            false
        }
    }
}
