//! The import parser against arbitrary bytes, with the default limits: it must refuse or accept,
//! never panic, hang or allocate past the limits (run with `-rss_limit_mb`, see `run.sh`).
//! An accepted archive must export again: the writer may refuse it only for a limit, never
//! because its output does not read back as the app it was given.

#![no_main]

use libfuzzer_sys::fuzz_target;
use orgplane_appzip::{read_archive, write_archive, ArchiveError, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(app) = read_archive(data, &limits) {
        if let Err(err @ ArchiveError::Write { .. }) = write_archive(&app, &limits) {
            panic!("an accepted archive does not export: {err}");
        }
    }
});
