//! Result tables (predictions, attention, sweeps) as zstd Parquet, written atomically.

use std::path::Path;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::atomic;
use crate::error::{ArtifactError, Result};

/// Writes `columns` as one batch to `path` (temp file + rename), with key-value metadata.
pub fn write_batch(
    path: &Path,
    schema: Arc<Schema>,
    columns: Vec<ArrayRef>,
    metadata: Vec<(String, String)>,
) -> Result<()> {
    let invalid = |e: &dyn std::fmt::Display| ArtifactError::invalid(path, e.to_string());
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| invalid(&e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid zstd level"),
        ))
        .set_key_value_metadata(Some(
            metadata
                .into_iter()
                .map(|(k, v)| KeyValue::new(k, v))
                .collect(),
        ))
        .build();
    atomic::write_with(path, |out| {
        let mut writer =
            ArrowWriter::try_new(out, schema, Some(props)).map_err(std::io::Error::other)?;
        writer.write(&batch).map_err(std::io::Error::other)?;
        writer.close().map_err(std::io::Error::other)?;
        Ok(())
    })
}
