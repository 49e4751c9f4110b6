//! Empty: this crate exists for its Cargo.toml, which unifies dependency features between the
//! CPU and GPU builds so that the second reuses the first's crates.
