//! Damaged and crafted `windows.bin` files: `WindowStore::open` returns an error naming the
//! file, or opens a store every window of which reads without a panic.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use stoker_artifact::manifest::WindowSpec;
use stoker_artifact::{INPUT_OK, TARGET_OK, WindowStore, WindowStoreWriter};
use support::{Rng, outcome};

/// Header fields' byte offsets (see the layout in `window_store.rs`).
const COLS_AT: usize = 12;
const ROWS_AT: usize = 16;
const TS_OFFSET_AT: usize = 32;
const FLAGS_OFFSET_AT: usize = 40;

/// A valid store of `rows` rows and 3 columns, with some rows flagged missing.
fn write_store(dir: &Path, rows: usize) -> Vec<u8> {
    let path = dir.join("valid.bin");
    let mut w = WindowStoreWriter::create(&path, 3).unwrap();
    for i in 0..rows {
        let flags = if i % 5 == 4 {
            INPUT_OK
        } else {
            INPUT_OK | TARGET_OK
        };
        let v = i as f32;
        w.push_row(&[v, -v, 0.5 * v], 1_000 + i as i64, flags)
            .unwrap();
    }
    w.finish().unwrap();
    fs::read(&path).unwrap()
}

fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// One damaged variant of `valid`.
fn mutate(valid: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    for _ in 0..1 + rng.below(3) {
        let kind = rng.below(7);
        // Header edits need a header (an earlier truncation may have cut it).
        if (kind < 3 || kind == 6) && bytes.len() < 64 {
            continue;
        }
        match kind {
            // A random header byte (past the magic, which only ever fails one check).
            0 => {
                let at = 8 + rng.below(56);
                bytes[at] = rng.next() as u8;
            }
            // A size or offset field set to a wrapping-prone value.
            1 => {
                let at = [ROWS_AT, TS_OFFSET_AT, FLAGS_OFFSET_AT][rng.below(3)];
                let v = rng.size();
                put_u64(&mut bytes, at, v);
            }
            2 => {
                let cols = rng.size() as u32;
                bytes[COLS_AT..COLS_AT + 4].copy_from_slice(&cols.to_le_bytes());
            }
            // Truncated (maybe into the header).
            3 => {
                let len = rng.below(bytes.len() + 1);
                bytes.truncate(len);
            }
            // Extended with junk.
            4 => {
                for _ in 0..1 + rng.below(40) {
                    bytes.push(rng.next() as u8);
                }
            }
            // Random rows and cols with offsets that agree with them and the file's length in
            // wrapping arithmetic: what a check without overflow checks lets through.
            6 => {
                let (rows, cols) = (rng.size(), rng.size() as u32);
                let len = bytes.len() as u64;
                let ts_offset = len.wrapping_sub(rows.wrapping_mul(9));
                bytes[COLS_AT..COLS_AT + 4].copy_from_slice(&cols.to_le_bytes());
                put_u64(&mut bytes, ROWS_AT, rows);
                put_u64(&mut bytes, TS_OFFSET_AT, ts_offset);
                let flags_offset = ts_offset.wrapping_add(rows.wrapping_mul(8));
                put_u64(&mut bytes, FLAGS_OFFSET_AT, flags_offset);
            }
            // A random byte anywhere.
            _ => {
                if !bytes.is_empty() {
                    let at = rng.below(bytes.len());
                    bytes[at] = rng.next() as u8;
                }
            }
        }
    }
    bytes
}

/// Reads everything a store serves through its public API.
fn read_everything(store: &WindowStore) {
    let (rows, cols) = (store.rows(), store.cols());
    assert_eq!(store.matrix().len(), rows * cols);
    assert_eq!(store.timestamps().len(), rows);
    assert_eq!(store.flags().len(), rows);
    for col in 0..cols {
        assert_eq!(store.column(col, 0..rows).len(), rows);
    }
    let spec = WindowSpec {
        input_len: 2,
        horizon: 1,
        output_len: 1,
        stride: 1,
    };
    for start in 0..rows.saturating_sub(1) {
        assert_eq!(store.window(start, spec).len(), 2 * cols);
    }
    let starts = store.window_starts(spec, 0..rows);
    let (mut inputs, mut targets) = (Vec::new(), Vec::new());
    store.gather_inputs(&starts, spec, &mut inputs);
    let target_cols: Vec<usize> = (0..cols.min(2)).collect();
    store.gather_targets(&starts, spec, &target_cols, &mut targets);
}

/// Opens `bytes` as a store at `path`: Ok(true) when it opened (and was read whole), Ok(false)
/// when refused with an error naming the file, Err with the panic's message.
fn open_case(path: &PathBuf, bytes: &[u8]) -> Result<bool, String> {
    // A new file each case: rewriting one in place (truncate, write) makes ext4 flush it to
    // disk on close, ~3 ms a case.
    let _ = fs::remove_file(path);
    fs::write(path, bytes).unwrap();
    outcome(|| match WindowStore::open(path) {
        Ok(store) => {
            read_everything(&store);
            Ok(true)
        }
        Err(e) => {
            let msg = e.to_string();
            if msg.contains("windows.bin") && !msg.contains('\n') {
                Ok(false)
            } else {
                Err(format!("error does not name the file on one line: {msg}"))
            }
        }
    })
}

#[test]
fn mutated_headers_truncations_and_extensions_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("windows.bin");
    let valid = write_store(dir.path(), 9);
    assert_eq!(open_case(&path, &valid), Ok(true));
    let (mut opened, mut refused) = (0, 0);
    for seed in 1..=4000u64 {
        let mut rng = Rng::for_case(seed);
        let bytes = mutate(&valid, &mut rng);
        match open_case(&path, &bytes) {
            Ok(true) => opened += 1,
            Ok(false) => refused += 1,
            Err(why) => panic!("case seed {seed}: {why}"),
        }
    }
    // Both outcomes are exercised (junk in padding or data bytes still opens).
    assert!(
        opened > 0 && refused > 0,
        "{opened} opened, {refused} refused"
    );
}

/// Sizes chosen so that every check of the old header validation held in wrapping u64
/// arithmetic (2^61 rows of 2 columns: the matrix "takes" 2^64 ≡ 0 bytes).
#[test]
fn overflowing_header_sizes_are_an_error_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("windows.bin");
    let mut bytes = write_store(dir.path(), 3);
    bytes.resize(bytes.len().next_multiple_of(8), 0);
    let len = bytes.len() as u64;
    let rows = 1u64 << 61;
    let ts_offset = len.wrapping_sub(rows.wrapping_mul(9));
    bytes[COLS_AT..COLS_AT + 4].copy_from_slice(&2u32.to_le_bytes());
    put_u64(&mut bytes, ROWS_AT, rows);
    put_u64(&mut bytes, TS_OFFSET_AT, ts_offset);
    put_u64(
        &mut bytes,
        FLAGS_OFFSET_AT,
        ts_offset.wrapping_add(rows.wrapping_mul(8)),
    );
    assert_eq!(open_case(&path, &bytes), Ok(false));
    let msg = WindowStore::open(&path).err().unwrap().to_string();
    assert!(
        msg.contains("windows.bin") && msg.contains("rows × cols × 4") && msg.contains("overflows"),
        "{msg}"
    );
}
