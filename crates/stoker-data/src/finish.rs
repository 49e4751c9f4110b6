//! The second pass, shared by every source: the shards of a first pass → normalised rows in
//! the window store; then the window spec, the windows per split and the manifest; then the
//! staging directory replaces `data/`.

use stoker_artifact::atomic::StagingDir;
use stoker_artifact::encode::RowEncoder;
use stoker_artifact::layout::STORE_FILE;
use stoker_artifact::manifest::{MANIFEST_VERSION, QualityReport, ShardRef, SourceFile, Split};
use stoker_artifact::{
    AncSignals, DatasetManifest, Feature, MetricScale, SourceConfig, Splits, WindowStore,
    WindowStoreWriter,
};

use crate::error::{Error, Result, outside_calendar};
use crate::request::PrepareRequest;
use crate::shards::for_each_row;
use crate::source::SourceSchema;

/// What a source's first pass leaves in the staging directory: its rows in raw units in
/// Parquet shards, the features (normalisation fitted on the train rows) and the splits.
pub(crate) struct Staged {
    pub sources: Vec<SourceFile>,
    pub schema: SourceSchema,
    pub features: Vec<Feature>,
    pub calendar: bool,
    pub shards: Vec<ShardRef>,
    pub splits: Splits,
    pub rows: usize,
    /// Everything but `windows`, which [`finish`] counts.
    pub quality: QualityReport,
    /// `None`: the step between the first two timestamps.
    pub time_step_seconds: Option<i64>,
    pub anc: Option<AncSignals>,
    /// The gap-filling rule (tabular sources).
    pub max_gap: Option<usize>,
}

/// Writes the window store and the manifest from `staged`, then commits `staging` to
/// `req.out_dir`.
pub(crate) fn finish(
    req: &PrepareRequest,
    staging: StagingDir,
    staged: Staged,
) -> Result<DatasetManifest> {
    let Staged {
        sources,
        schema,
        features,
        calendar,
        shards,
        splits,
        rows,
        mut quality,
        time_step_seconds,
        anc,
        max_gap,
    } = staged;
    let encoder = RowEncoder {
        features: &features,
        numeric: schema.numeric.len(),
        categories: schema.categorical.as_ref().map(|(_, c)| c.as_slice()),
        calendar,
    };
    let store_path = staging.path().join(STORE_FILE);
    let mut store = WindowStoreWriter::create(&store_path, features.len())?;
    let mut values = vec![0f32; features.len()];
    for_each_row(staging.path(), &shards, |row| {
        let category = row.categories.first().and_then(|c| c.as_deref());
        let flags = encoder
            .encode(
                row.timestamp,
                &row.numeric,
                category,
                row.target_observed,
                &mut values,
            )
            .ok_or_else(|| outside_calendar(&req.input, row.timestamp))?;
        store.push_row(&values, row.timestamp, flags)?;
        Ok(())
    })?;
    store.finish()?;

    let opened = WindowStore::open(&store_path)?;
    let first_step = match opened.timestamps() {
        [first, second, ..] => second - first,
        _ => 0,
    };
    let mut manifest = DatasetManifest {
        format_version: MANIFEST_VERSION,
        source_kind: source_kind(&req.config.data.source).into(),
        sources,
        features,
        targets: schema.targets.clone(),
        target_unit: schema
            .raw_unit
            .clone()
            .unwrap_or_else(|| "normalised".into()),
        metric_scale: if schema.raw_unit.is_some() {
            MetricScale::Raw
        } else {
            MetricScale::Normalised
        },
        window: req.config.window(),
        rows,
        time_step_seconds: time_step_seconds.unwrap_or(first_step),
        splits,
        store_file: STORE_FILE.into(),
        shards,
        quality: QualityReport::default(),
        max_gap,
        anc,
    };
    // ANC's window depends on the prepared secondary path; the others' on the config alone.
    let window = req.config.window_for(&manifest);
    manifest.window = window;
    quality.windows = [Split::Train, Split::Val, Split::Test]
        .map(|s| {
            (
                s.name().to_string(),
                opened
                    .clean_window_starts(window, manifest.splits.rows(s))
                    .count(),
            )
        })
        .to_vec();
    if let Some((name, _)) = quality.windows.iter().find(|(_, n)| *n == 0) {
        return Err(Error::input(
            &req.input,
            format!(
                "the {name} split has no complete window ({} input rows, horizon {}, {} output rows)",
                window.input_len, window.horizon, window.output_len
            ),
        ));
    }
    manifest.quality = quality;
    manifest.save(staging.path())?;
    staging.commit()?;
    Ok(manifest)
}

fn source_kind(source: &SourceConfig) -> &'static str {
    match source {
        SourceConfig::Pm25 { .. } => "pm25",
        SourceConfig::Ett { .. } => "ett",
        SourceConfig::Anc(_) => "anc",
    }
}
