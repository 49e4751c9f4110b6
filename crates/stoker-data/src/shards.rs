//! Cleaned rows as zstd Parquet shards: timestamp, numeric columns in raw units (null = missing),
//! categorical columns as text, and whether the target was observed. Shards hold a bounded number
//! of rows, so writing and reading them never holds more than one shard in memory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Float32Array, Float32Builder, Int64Array,
    Int64Builder, StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use stoker_artifact::manifest::ShardRef;

use crate::error::{Error, Result};

const ROW_GROUP_ROWS: usize = 16_384;

/// One cleaned row, borrowed for writing or reused while reading.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ShardRow {
    pub timestamp: i64,
    pub numeric: Vec<f32>,
    pub categories: Vec<Option<String>>,
    pub target_observed: bool,
}

pub(crate) struct ShardWriter {
    dir: PathBuf,
    schema: SchemaRef,
    shard_rows: usize,
    buffered: usize,
    timestamp: Int64Builder,
    numeric: Vec<Float32Builder>,
    categories: Vec<StringBuilder>,
    target_observed: BooleanBuilder,
    written: Vec<ShardRef>,
}

fn schema(numeric: &[&str], categories: &[&str]) -> SchemaRef {
    let mut fields = vec![Field::new("timestamp", DataType::Int64, false)];
    fields.extend(
        numeric
            .iter()
            .map(|n| Field::new(*n, DataType::Float32, true)),
    );
    fields.extend(
        categories
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, true)),
    );
    fields.push(Field::new("target_observed", DataType::Boolean, false));
    Arc::new(Schema::new(fields))
}

impl ShardWriter {
    pub fn new(dir: &Path, numeric: &[&str], categories: &[&str], shard_rows: usize) -> Self {
        Self {
            dir: dir.into(),
            schema: schema(numeric, categories),
            shard_rows,
            buffered: 0,
            timestamp: Int64Builder::new(),
            numeric: numeric.iter().map(|_| Float32Builder::new()).collect(),
            categories: categories.iter().map(|_| StringBuilder::new()).collect(),
            target_observed: BooleanBuilder::new(),
            written: Vec::new(),
        }
    }

    pub fn push(
        &mut self,
        timestamp: i64,
        numeric: &[f32],
        categories: &[Option<&str>],
        target_observed: bool,
    ) -> Result<()> {
        self.timestamp.append_value(timestamp);
        for (b, &v) in self.numeric.iter_mut().zip(numeric) {
            b.append_option((!v.is_nan()).then_some(v));
        }
        for (b, v) in self.categories.iter_mut().zip(categories) {
            b.append_option(*v);
        }
        self.target_observed.append_value(target_observed);
        self.buffered += 1;
        if self.buffered == self.shard_rows {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.buffered == 0 {
            return Ok(());
        }
        let mut columns: Vec<ArrayRef> = vec![Arc::new(self.timestamp.finish())];
        columns.extend(
            self.numeric
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        columns.extend(
            self.categories
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        columns.push(Arc::new(self.target_observed.finish()));
        let name = format!("shard-{:05}.parquet", self.written.len());
        let path = self.dir.join(&name);
        let failed = |e: &dyn std::fmt::Display| Error::Shard {
            path: path.clone(),
            message: format!("cannot write: {e}"),
        };
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| failed(&e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(3).map_err(|e| failed(&e))?,
            ))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let file = File::create(&path).map_err(|e| Error::io(&path, "cannot create", e))?;
        let mut writer =
            ArrowWriter::try_new(file, self.schema.clone(), Some(props)).map_err(|e| failed(&e))?;
        writer.write(&batch).map_err(|e| failed(&e))?;
        writer.close().map_err(|e| failed(&e))?;
        self.written.push(ShardRef {
            file: name,
            rows: self.buffered,
        });
        self.buffered = 0;
        Ok(())
    }

    pub fn finish(mut self) -> Result<Vec<ShardRef>> {
        self.flush()?;
        Ok(self.written)
    }
}

/// Calls `visit` for every row of the shards, in order, reusing one row buffer.
pub(crate) fn for_each_row(
    dir: &Path,
    shards: &[ShardRef],
    mut visit: impl FnMut(&ShardRow) -> Result<()>,
) -> Result<()> {
    let mut row = ShardRow::default();
    for shard in shards {
        let path = dir.join(&shard.file);
        let failed = |message: String| Error::Shard {
            path: path.clone(),
            message,
        };
        let file = File::open(&path).map_err(|e| Error::io(&path, "cannot open", e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| failed(format!("not a Parquet shard: {e}")))?
            .with_batch_size(8192)
            .build()
            .map_err(|e| failed(format!("cannot read: {e}")))?;
        for batch in reader {
            let batch = batch.map_err(|e| failed(format!("cannot read: {e}")))?;
            let n_cols = batch.num_columns();
            if n_cols < 2 {
                return Err(failed(format!("{n_cols} columns, not a prepare shard")));
            }
            let col = |i: usize| batch.column(i).as_any();
            let ts = col(0)
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| failed("the timestamp column is not Int64".into()))?;
            let observed = col(n_cols - 1)
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| failed("the target_observed column is not Boolean".into()))?;
            let numeric: Vec<&Float32Array> = (1..n_cols - 1)
                .filter_map(|i| col(i).downcast_ref::<Float32Array>())
                .collect();
            let categories: Vec<&StringArray> = (1 + numeric.len()..n_cols - 1)
                .filter_map(|i| col(i).downcast_ref::<StringArray>())
                .collect();
            row.numeric.resize(numeric.len(), 0.0);
            row.categories.resize(categories.len(), None);
            for r in 0..batch.num_rows() {
                row.timestamp = ts.value(r);
                row.target_observed = observed.value(r);
                for (dst, a) in row.numeric.iter_mut().zip(&numeric) {
                    *dst = if a.is_null(r) { f32::NAN } else { a.value(r) };
                }
                for (dst, a) in row.categories.iter_mut().zip(&categories) {
                    match (a.is_null(r), dst.as_mut()) {
                        (true, _) => *dst = None,
                        (false, Some(s)) => {
                            s.clear();
                            s.push_str(a.value(r));
                        }
                        (false, None) => *dst = Some(a.value(r).to_owned()),
                    }
                }
                visit(&row)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_roundtrip_across_shards() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ShardWriter::new(dir.path(), &["a", "b"], &["dir"], 3);
        for i in 0..7 {
            let b = if i == 4 { f32::NAN } else { i as f32 * 0.5 };
            let cat = (i != 2).then_some(if i % 2 == 0 { "NE" } else { "cv" });
            w.push(i * 10, &[i as f32, b], &[cat], i % 3 != 0).unwrap();
        }
        let shards = w.finish().unwrap();
        assert_eq!(
            shards.iter().map(|s| s.rows).collect::<Vec<_>>(),
            vec![3, 3, 1]
        );
        let mut seen = Vec::new();
        for_each_row(dir.path(), &shards, |row| {
            seen.push(row.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), 7);
        assert_eq!(seen[5].timestamp, 50);
        assert!(seen[4].numeric[1].is_nan() && seen[4].numeric[0] == 4.0);
        assert_eq!(seen[2].categories[0], None);
        assert_eq!(seen[3].categories[0].as_deref(), Some("cv"));
        assert!(!seen[3].target_observed && seen[4].target_observed);
    }
}
