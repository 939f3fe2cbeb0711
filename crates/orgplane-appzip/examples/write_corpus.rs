//! Writes the valid archive and the hostile corpus (cases up to 64 KiB) into a directory, one
//! file per case: the fuzz seeds (`fuzz/seed.sh`).
//!
//! `cargo run -p orgplane-appzip --features corpus --example write_corpus -- DIR`

use std::path::PathBuf;

use orgplane_appzip::corpus::{hostile_archives, valid_archive};

const MAX_SEED_BYTES: usize = 64 * 1024;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("valid.zip"), valid_archive())?;
    let mut written = 1;
    for (name, bytes) in hostile_archives() {
        if bytes.len() <= MAX_SEED_BYTES {
            std::fs::write(dir.join(format!("{name}.zip")), bytes)?;
            written += 1;
        }
    }
    println!("wrote {written} seeds to {}", dir.display());
    Ok(())
}
