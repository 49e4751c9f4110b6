//! The window store: one little-endian file that train and predict memory-map.
//!
//! Layout (all offsets from the start of the file):
//! ```text
//! 0   magic "STKWSTOR"  | u32 version | u32 cols | u64 rows
//! 24  u64 matrix_offset | u64 timestamps_offset | u64 flags_offset | zero padding to 64
//! 64  f32 matrix [rows × cols], row-major: a window of L rows is one contiguous slice
//! ..  i64 timestamps [rows] (seconds since the Unix epoch, 8-byte aligned)
//! ..  u8 flags [rows] (bit 0: every input column present; bit 1: target observed)
//! ```

use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::atomic::temp_sibling;
use crate::error::{ArtifactError, Result};
use crate::manifest::WindowSpec;

pub const STORE_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"STKWSTOR";
const HEADER_LEN: u64 = 64;

/// Every input column of the row holds a value (observed or interpolated).
pub const INPUT_OK: u8 = 1;
/// The target column of the row was observed (not missing, not interpolated).
pub const TARGET_OK: u8 = 2;

#[cfg(not(target_endian = "little"))]
compile_error!("the window store is read zero-copy and needs a little-endian target");

/// Streams rows into a new store; the file appears at its path only after `finish`.
pub struct WindowStoreWriter {
    path: PathBuf,
    tmp: PathBuf,
    matrix: BufWriter<File>,
    timestamps: (PathBuf, BufWriter<File>),
    flags: (PathBuf, BufWriter<File>),
    cols: usize,
    rows: u64,
}

impl WindowStoreWriter {
    pub fn create(path: &Path, cols: usize) -> Result<Self> {
        let io_err = |p: &Path| {
            let p = p.to_path_buf();
            move |e| ArtifactError::io(p, e)
        };
        let tmp = temp_sibling(path);
        let mut matrix = BufWriter::new(File::create(&tmp).map_err(io_err(&tmp))?);
        matrix
            .write_all(&[0u8; HEADER_LEN as usize])
            .map_err(io_err(&tmp))?;
        let side = |suffix: &str| -> Result<(PathBuf, BufWriter<File>)> {
            let p = tmp.with_extension(suffix);
            let f = File::create(&p).map_err(io_err(&p))?;
            Ok((p, BufWriter::new(f)))
        };
        Ok(Self {
            path: path.to_path_buf(),
            timestamps: side("ts")?,
            flags: side("flags")?,
            tmp,
            matrix,
            cols,
            rows: 0,
        })
    }

    pub fn push_row(&mut self, values: &[f32], timestamp: i64, flags: u8) -> Result<()> {
        assert_eq!(values.len(), self.cols, "row width must match the store");
        let res = (|| {
            for v in values {
                self.matrix.write_all(&v.to_le_bytes())?;
            }
            self.timestamps.1.write_all(&timestamp.to_le_bytes())?;
            self.flags.1.write_all(&[flags])
        })();
        self.rows += 1;
        res.map_err(|e| ArtifactError::io(&self.tmp, e))
    }

    /// Appends the side sections, writes the header, syncs and renames into place.
    pub fn finish(mut self) -> Result<u64> {
        let res = self.assemble();
        let _ = fs::remove_file(&self.timestamps.0);
        let _ = fs::remove_file(&self.flags.0);
        match res.and_then(|()| fs::rename(&self.tmp, &self.path)) {
            Ok(()) => Ok(self.rows),
            Err(e) => {
                let _ = fs::remove_file(&self.tmp);
                Err(ArtifactError::io(&self.path, e))
            }
        }
    }

    fn assemble(&mut self) -> io::Result<()> {
        let matrix_end = HEADER_LEN + self.rows * self.cols as u64 * 4;
        let ts_offset = matrix_end.next_multiple_of(8);
        let flags_offset = ts_offset + self.rows * 8;
        self.matrix
            .write_all(&vec![0u8; (ts_offset - matrix_end) as usize])?;
        for (side, expected) in [
            (&mut self.timestamps, self.rows * 8),
            (&mut self.flags, self.rows),
        ] {
            side.1.flush()?;
            let copied = io::copy(&mut File::open(&side.0)?, &mut self.matrix)?;
            if copied != expected {
                return Err(io::Error::other("side section has the wrong length"));
            }
        }
        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&STORE_VERSION.to_le_bytes());
        header.extend_from_slice(&(self.cols as u32).to_le_bytes());
        header.extend_from_slice(&self.rows.to_le_bytes());
        for offset in [HEADER_LEN, ts_offset, flags_offset] {
            header.extend_from_slice(&offset.to_le_bytes());
        }
        header.resize(HEADER_LEN as usize, 0);
        self.matrix.flush()?;
        let file = self.matrix.get_mut();
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&header)?;
        file.sync_all()
    }
}

/// The header's size fields, as read (untrusted: any bit pattern).
struct Header {
    cols: u64,
    rows: u64,
    matrix_offset: u64,
    ts_offset: u64,
    flags_offset: u64,
}

/// Section sizes a header was checked to describe exactly, within a file of the checked length.
struct Layout {
    cols: usize,
    rows: usize,
    ts_offset: usize,
    flags_offset: usize,
}

impl Header {
    /// Checks every size and offset against `file_len` in checked u64 arithmetic (a crafted
    /// header must not wrap into a plausible layout), naming the field that is wrong.
    fn check(&self, file_len: u64) -> std::result::Result<Layout, String> {
        let overflow = |what: &str| {
            format!(
                "inconsistent header: `{what}` overflows ({} rows × {} cols)",
                self.rows, self.cols
            )
        };
        if self.matrix_offset != HEADER_LEN {
            return Err(format!(
                "inconsistent header: `matrix_offset` is {}, expected {HEADER_LEN}",
                self.matrix_offset
            ));
        }
        let matrix_end = self
            .rows
            .checked_mul(self.cols)
            .and_then(|n| n.checked_mul(4))
            .and_then(|n| n.checked_add(HEADER_LEN))
            .ok_or_else(|| overflow("rows × cols × 4"))?;
        if self.ts_offset < matrix_end || !self.ts_offset.is_multiple_of(8) {
            return Err(format!(
                "inconsistent header: `timestamps_offset` is {}, expected a multiple of 8 at or \
                 after the matrix's end ({matrix_end}: {} rows × {} cols)",
                self.ts_offset, self.rows, self.cols
            ));
        }
        let ts_end = self
            .rows
            .checked_mul(8)
            .and_then(|n| n.checked_add(self.ts_offset))
            .ok_or_else(|| overflow("timestamps_offset + rows × 8"))?;
        if self.flags_offset != ts_end {
            return Err(format!(
                "inconsistent header: `flags_offset` is {}, expected {ts_end} (the timestamps' end)",
                self.flags_offset
            ));
        }
        let flags_end = self
            .flags_offset
            .checked_add(self.rows)
            .ok_or_else(|| overflow("flags_offset + rows"))?;
        if flags_end != file_len {
            return Err(format!(
                "inconsistent header: {} rows × {} cols needs {flags_end} bytes, file has {file_len}",
                self.rows, self.cols
            ));
        }
        // Every section ends within the file, whose length fits usize: so do all of these.
        let fits = |v: u64| usize::try_from(v).map_err(|_| overflow("a section offset"));
        Ok(Layout {
            cols: fits(self.cols)?,
            rows: fits(self.rows)?,
            ts_offset: fits(self.ts_offset)?,
            flags_offset: fits(self.flags_offset)?,
        })
    }
}

/// A read-only, memory-mapped window store. Windows are borrowed slices of the map.
pub struct WindowStore {
    map: Mmap,
    path: PathBuf,
    cols: usize,
    rows: usize,
    ts_offset: usize,
    flags_offset: usize,
}

impl WindowStore {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| ArtifactError::io(path, e))?;
        // SAFETY: stores are written once to a temp path and renamed; nothing mutates them after.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| ArtifactError::io(path, e))?;
        let bad = |msg: String| ArtifactError::invalid(path, msg);
        if map.len() < HEADER_LEN as usize || &map[..8] != MAGIC {
            return Err(bad(
                "not a stoker window store (bad magic or too short)".into()
            ));
        }
        let u32_at = |o: usize| u32::from_le_bytes(map[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(map[o..o + 8].try_into().unwrap());
        let version = u32_at(8);
        if version != STORE_VERSION {
            return Err(ArtifactError::Version {
                path: path.into(),
                field: "header.version",
                found: version,
                expected: STORE_VERSION,
            });
        }
        let header = Header {
            cols: u32_at(12) as u64,
            rows: u64_at(16),
            matrix_offset: u64_at(24),
            ts_offset: u64_at(32),
            flags_offset: u64_at(40),
        };
        let layout = header.check(map.len() as u64).map_err(bad)?;
        Ok(Self {
            map,
            path: path.into(),
            cols: layout.cols,
            rows: layout.rows,
            ts_offset: layout.ts_offset,
            flags_offset: layout.flags_offset,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The whole matrix, row-major.
    pub fn matrix(&self) -> &[f32] {
        let bytes = &self.map[HEADER_LEN as usize..HEADER_LEN as usize + self.rows * self.cols * 4];
        // SAFETY: the map is page-aligned and the matrix starts at byte 64, so the pointer is
        // 4-aligned; length was checked at open; every bit pattern is a valid f32.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), self.rows * self.cols) }
    }

    pub fn timestamps(&self) -> &[i64] {
        let bytes = &self.map[self.ts_offset..self.ts_offset + self.rows * 8];
        // SAFETY: offset is 8-aligned (checked at open) within a page-aligned map.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<i64>(), self.rows) }
    }

    pub fn flags(&self) -> &[u8] {
        &self.map[self.flags_offset..self.flags_offset + self.rows]
    }

    /// Rows `range` as one contiguous slice (zero-copy).
    pub fn rows_slice(&self, range: Range<usize>) -> &[f32] {
        &self.matrix()[range.start * self.cols..range.end * self.cols]
    }

    /// One column over `rows`, copied out of the row-major matrix.
    pub fn column(&self, col: usize, rows: Range<usize>) -> Vec<f32> {
        self.rows_slice(rows)
            .iter()
            .skip(col)
            .step_by(self.cols)
            .copied()
            .collect()
    }

    pub fn value(&self, row: usize, col: usize) -> f32 {
        self.matrix()[row * self.cols + col]
    }

    /// Input rows of the window starting at `start`, zero-copy.
    pub fn window(&self, start: usize, spec: WindowSpec) -> &[f32] {
        self.rows_slice(start..start + spec.input_len)
    }

    /// Appends the inputs of the windows at `starts` to `out`, as a [B, L, F] row-major batch.
    pub fn gather_inputs(&self, starts: &[usize], spec: WindowSpec, out: &mut Vec<f32>) {
        out.reserve(starts.len() * spec.input_len * self.cols);
        for &s in starts {
            out.extend_from_slice(self.window(s, spec));
        }
    }

    /// Appends the targets of the windows at `starts` to `out`: per window, `output_len` steps of
    /// the columns `cols` ([B, output_len × cols] row-major).
    pub fn gather_targets(
        &self,
        starts: &[usize],
        spec: WindowSpec,
        cols: &[usize],
        out: &mut Vec<f32>,
    ) {
        out.reserve(starts.len() * spec.output_len * cols.len());
        for &s in starts {
            for row in spec.target_rows(s) {
                out.extend(cols.iter().map(|&c| self.value(row, c)));
            }
        }
    }

    /// Starts of the windows whose target rows all lie in `target_rows` and were observed, and
    /// whose inputs are all present.
    pub fn window_starts(&self, spec: WindowSpec, target_rows: Range<usize>) -> Vec<usize> {
        self.clean_window_starts(spec, target_rows).collect()
    }

    /// The same starts, in order, in constant memory (prepare counts them over stores of any
    /// size): window starts and their target rows only move forward, so one scan of the flags
    /// remembers the last row lacking an input and the last lacking an observed target.
    pub fn clean_window_starts(
        &self,
        spec: WindowSpec,
        target_rows: Range<usize>,
    ) -> impl Iterator<Item = usize> + '_ {
        let flags = self.flags();
        let first = target_rows.start.saturating_sub(spec.lead());
        let end = target_rows.end.min(self.rows);
        let starts = match end.checked_sub(spec.span()) {
            Some(last) if last >= first => first..last + 1,
            _ => 0..0,
        };
        let (mut input_scan, mut target_scan) = (first, spec.target_rows(first).start);
        let (mut bad_input, mut bad_target): (Option<usize>, Option<usize>) = (None, None);
        starts.step_by(spec.stride.max(1)).filter(move |&s| {
            while input_scan < s + spec.input_len {
                if flags[input_scan] & INPUT_OK == 0 {
                    bad_input = Some(input_scan);
                }
                input_scan += 1;
            }
            let targets = spec.target_rows(s);
            while target_scan < targets.end {
                if flags[target_scan] & TARGET_OK == 0 {
                    bad_target = Some(target_scan);
                }
                target_scan += 1;
            }
            bad_input.is_none_or(|b| b < s) && bad_target.is_none_or(|b| b < targets.start)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_store(dir: &Path, rows: &[([f32; 2], u8)]) -> PathBuf {
        let path = dir.join("windows.bin");
        let mut w = WindowStoreWriter::create(&path, 2).unwrap();
        for (i, (values, flags)) in rows.iter().enumerate() {
            w.push_row(values, 1000 + i as i64 * 3600, *flags).unwrap();
        }
        w.finish().unwrap();
        path
    }

    /// The streaming scan against the definition, window by window, over random gaps, both
    /// signs of horizon, strides and split ranges.
    #[test]
    fn clean_starts_match_the_definition() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let rows: Vec<_> = (0..300)
            .map(|_| {
                let input = if next(10) == 0 { 0 } else { INPUT_OK };
                let target = if next(8) == 0 { 0 } else { TARGET_OK };
                ([0.0, 0.0], input | target)
            })
            .collect();
        let store = WindowStore::open(&write_store(dir.path(), &rows)).unwrap();
        let flags = store.flags();
        for (input_len, horizon, output_len, stride) in [
            (5, 1, 1, 1),
            (12, 3, 4, 1),
            (9, -3, 4, 4),
            (16, 0, 2, 3),
            (3, 1, 6, 2),
        ] {
            let spec = WindowSpec {
                input_len,
                horizon,
                output_len,
                stride,
            };
            for range in [0..300usize, 40..170, 150..300, 290..300] {
                let first = range.start.saturating_sub(spec.lead());
                let expected: Vec<usize> = (first..300)
                    .step_by(stride)
                    .filter(|&s| s + spec.span() <= range.end)
                    .filter(|&s| {
                        (s..s + input_len).all(|r| flags[r] & INPUT_OK != 0)
                            && spec.target_rows(s).all(|r| flags[r] & TARGET_OK != 0)
                    })
                    .collect();
                assert_eq!(
                    store.window_starts(spec, range.clone()),
                    expected,
                    "{spec:?} {range:?}"
                );
            }
        }
    }

    #[test]
    fn roundtrip_and_zero_copy_windows() {
        let dir = tempfile::tempdir().unwrap();
        let ok = INPUT_OK | TARGET_OK;
        let rows: Vec<_> = (0..7).map(|i| ([i as f32, -(i as f32)], ok)).collect();
        let store = WindowStore::open(&write_store(dir.path(), &rows)).unwrap();
        assert_eq!((store.rows(), store.cols()), (7, 2));
        assert_eq!(store.timestamps()[2], 1000 + 2 * 3600);
        let spec = WindowSpec {
            input_len: 3,
            horizon: 1,
            output_len: 1,
            stride: 1,
        };
        assert_eq!(store.window(2, spec), &[2.0, -2.0, 3.0, -3.0, 4.0, -4.0]);
        let w = store.window(2, spec);
        let m = store.matrix();
        assert!(
            std::ptr::eq(w.as_ptr(), &m[4]),
            "window must borrow the map"
        );
        assert_eq!(store.window_starts(spec, 0..7), vec![0, 1, 2, 3]);
        assert_eq!(store.window_starts(spec, 5..7), vec![2, 3]);
    }

    #[test]
    fn windows_skip_missing_inputs_and_unobserved_targets() {
        let dir = tempfile::tempdir().unwrap();
        let ok = INPUT_OK | TARGET_OK;
        let flags = [ok, ok, INPUT_OK, ok, 0, ok, ok, ok, ok];
        let rows: Vec<_> = flags.iter().map(|&f| ([0.0, 0.0], f)).collect();
        let store = WindowStore::open(&write_store(dir.path(), &rows)).unwrap();
        let spec = WindowSpec {
            input_len: 2,
            horizon: 1,
            output_len: 1,
            stride: 1,
        };
        // target 2 unobserved; windows touching row 4 dropped.
        assert_eq!(store.window_starts(spec, 0..9), vec![1, 5, 6]);
        let two_steps = WindowSpec {
            output_len: 2,
            ..spec
        };
        // Every target row must be observed and inside the range: only 5 (targets 7, 8) is left.
        assert_eq!(store.window_starts(two_steps, 0..9), vec![5]);
        assert!(store.window_starts(two_steps, 0..8).is_empty());
    }

    #[test]
    fn truncated_or_foreign_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let ok = INPUT_OK | TARGET_OK;
        let path = write_store(dir.path(), &[([1.0, 2.0], ok), ([3.0, 4.0], ok)]);
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let msg = WindowStore::open(&path).err().unwrap().to_string();
        assert!(
            msg.contains("windows.bin") && msg.contains("inconsistent"),
            "{msg}"
        );
        fs::write(
            &path,
            b"hello world, certainly not a store, padded to sixty-four bytes!!",
        )
        .unwrap();
        assert!(WindowStore::open(&path).is_err());
    }
}
