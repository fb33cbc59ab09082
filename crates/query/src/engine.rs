//! [`QueryEngine`]: a DataFusion session over one archive root.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use ecg_archive::table::PARTITION_COLUMN;
use ecg_archive::{Table, TABLES};

use crate::files::ArchiveFiles;
use crate::QueryError;

/// Times a query is run again after a file it listed vanished.
const VANISHED_RETRIES: usize = 5;

/// SQL over an archive root. Tables whose folder is missing are registered
/// empty, with their schema, so a query on a young archive returns no rows
/// rather than "table not found".
pub struct QueryEngine {
    ctx: SessionContext,
    files: ArchiveFiles,
    root: PathBuf,
    with_files: Vec<&'static str>,
    /// The figures' views, created before the first query (DataFusion
    /// plans a view asynchronously).
    views: tokio::sync::OnceCell<()>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("root", &self.root)
            .field("with_files", &self.with_files)
            .finish()
    }
}

impl QueryEngine {
    /// Registers every table of the archive at `archive_root`; an error if
    /// the folder does not exist.
    pub fn open(archive_root: &Path) -> Result<Self, QueryError> {
        if !archive_root.is_dir() {
            return Err(QueryError::NoArchive(archive_root.to_path_buf()));
        }
        let root = archive_root
            .canonicalize()
            .map_err(|source| QueryError::Io {
                path: archive_root.to_path_buf(),
                source,
            })?;
        // The archive changes under a long-lived engine: no listing is
        // kept from one query to the next.
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(CacheManagerConfig::default().with_list_files_cache_limit(0))
            .build_arc()?;
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
        let files = ArchiveFiles::new(root.clone()).map_err(|e| QueryError::Io {
            path: root.clone(),
            source: std::io::Error::other(e),
        })?;
        ctx.register_object_store(
            ObjectStoreUrl::local_filesystem().as_ref(),
            Arc::new(files.clone()),
        );
        let mut with_files = Vec::new();
        for table in TABLES {
            let dir = root.join(table.name());
            let provider: Arc<dyn TableProvider> = if dir.is_dir() {
                with_files.push(table.name());
                Arc::new(listing_table(table, &dir)?)
            } else {
                let schema = with_partition_column(table);
                Arc::new(MemTable::try_new(schema, vec![vec![]])?)
            };
            ctx.register_table(table.name(), provider)?;
        }
        Ok(Self {
            ctx,
            files,
            root,
            with_files,
            views: tokio::sync::OnceCell::new(),
        })
    }

    /// Tables that have a folder in the archive (the others are empty).
    pub fn tables_with_files(&self) -> &[&'static str] {
        &self.with_files
    }

    /// Runs one SQL statement and collects its result. Besides the tables,
    /// the views of [`crate::figures`] are there.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
        self.views
            .get_or_try_init(|| async {
                for (_, create) in crate::figures::views() {
                    self.ctx.sql(&create).await?;
                }
                Ok::<_, QueryError>(())
            })
            .await?;
        let mut attempts = 0;
        loop {
            self.files.take_vanished();
            let result = async { self.ctx.sql(sql).await?.collect().await }.await;
            match result {
                // A compaction retired a file between the listing and its
                // reading: its rows are in the merged file a new listing shows.
                Err(_) if self.files.take_vanished() && attempts < VANISHED_RETRIES => {
                    attempts += 1;
                }
                outcome => return outcome.map_err(|e| self.name_damaged_files(e)),
            }
        }
    }

    /// DataFusion reports a damaged Parquet file without its name; this
    /// finds the files whose footers cannot be read and names them.
    fn name_damaged_files(&self, e: datafusion::error::DataFusionError) -> QueryError {
        if !e.to_string().contains("Parquet error") {
            return QueryError::DataFusion(e);
        }
        let files = match ecg_archive::unreadable_footers(&self.root) {
            Ok(found) => found
                .iter()
                .map(|f| format!("{}: {}", f.file, f.problem))
                .collect(),
            Err(scan) => vec![format!("(the archive could not be listed: {scan})")],
        };
        QueryError::Damaged {
            cause: e,
            root: self.root.clone(),
            files,
        }
    }

    /// [`QueryEngine::sql`] for synchronous callers (not from inside a
    /// Tokio runtime): runs the query on a runtime of its own.
    pub fn sql_blocking(&self, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(QueryError::Runtime)?;
        rt.block_on(self.sql(sql))
    }
}

fn with_partition_column(table: Table) -> Arc<Schema> {
    let mut fields: Vec<Field> = table
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(PARTITION_COLUMN, DataType::Date32, false));
    Arc::new(Schema::new(fields))
}

fn listing_table(table: Table, dir: &Path) -> Result<ListingTable, QueryError> {
    // A trailing slash makes the URL a folder to list, not a file.
    let url = ListingTableUrl::parse(format!("{}/", dir.display()))?;
    // Only `*.parquet`: files being written end in `.tmp` and stay invisible.
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![(PARTITION_COLUMN.to_string(), DataType::Date32)]);
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(table.schema());
    Ok(ListingTable::try_new(config)?)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use arrow::array::AsArray;
    use ecg_archive::ObjectStore as _;
    use ecg_archive::{compact_local, ArchiveWriter, CompactConfig, WriterConfig};
    use time::macros::{date, datetime};
    use time::{Duration, OffsetDateTime};

    use super::*;
    use crate::figures::tests::visit;

    const DAY: OffsetDateTime = datetime!(2026-11-29 10:00 UTC);

    /// `n` visits on 2026-11-29, one batch each (a quiet county's day).
    fn archive(root: &Path, n: usize) {
        append(root, 0..n, "t");
    }

    fn append(root: &Path, ids: std::ops::Range<usize>, writer: &str) {
        let cfg = WriterConfig {
            max_visits: 1,
            ..WriterConfig::new(writer)
        };
        let mut w = ArchiveWriter::open_local(root, cfg).unwrap();
        for i in ids {
            let at = DAY + Duration::minutes(i as i64);
            w.append(visit(i as u32, "clinic-1", at, None)).unwrap();
        }
        w.flush().unwrap();
    }

    fn compact_day(root: &Path) {
        let report = compact_local(root, &CompactConfig::new(date!(2026 - 11 - 30))).unwrap();
        assert!(report.refused.is_empty(), "{:?}", report.refused);
    }

    fn counts(engine: &QueryEngine, sql: &str) -> Vec<i64> {
        let batches = engine.sql_blocking(sql).unwrap();
        let b = &batches[0];
        (0..b.num_columns())
            .map(|c| {
                b.column(c)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .value(0)
            })
            .collect()
    }

    const COUNTS: &str = "SELECT (SELECT count(*) FROM visits) AS visits, \
        (SELECT count(DISTINCT visit_id) FROM visits) AS visit_ids, \
        (SELECT count(*) FROM waveforms) AS waveforms, \
        (SELECT count(DISTINCT visit_id) FROM waveforms) AS waveform_visit_ids";

    fn files(root: &Path) -> Vec<String> {
        ecg_archive::LocalDisk::new(root).list("").unwrap()
    }

    fn copy(from: &Path, to: &Path, keys: &[String]) {
        for key in keys {
            let dest = to.join(key);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(from.join(key), dest).unwrap();
        }
    }

    #[test]
    fn a_merge_committed_but_not_yet_retired_is_counted_once() {
        let before = tempfile::tempdir().unwrap();
        archive(before.path(), 6);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        copy(before.path(), root, &files(before.path()));
        compact_day(root);
        assert_eq!(
            files(root)
                .iter()
                .filter(|k| k.starts_with("visits/"))
                .count(),
            1
        );
        // The sources back beside their merge: what a compaction leaves
        // between its commit and its deletions (or killed there).
        copy(before.path(), root, &files(before.path()));

        let engine = QueryEngine::open(root).unwrap();
        assert_eq!(counts(&engine, COUNTS), [6, 6, 6, 6]);
    }

    #[test]
    fn a_batch_is_counted_once_its_visits_file_commits_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        archive(root, 3);
        // A batch being written: its waveforms stored, its visits not yet.
        let waveforms = files(root)
            .into_iter()
            .find(|k| k.starts_with("waveforms/"))
            .unwrap();
        let pending = format!(
            "{}/t-pending.parquet",
            waveforms.rsplit_once('/').unwrap().0
        );
        std::fs::copy(root.join(&waveforms), root.join(pending)).unwrap();

        let engine = QueryEngine::open(root).unwrap();
        assert_eq!(counts(&engine, COUNTS), [3, 3, 3, 3]);
    }

    #[test]
    fn a_file_retired_between_the_listing_and_the_reading_is_read_from_its_merge() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        archive(&root, 6);
        let engine = QueryEngine::open(&root).unwrap();
        let at = root.clone();
        engine
            .files
            .after_listing
            .set(Table::Waveforms, move || compact_day(&at));

        let sql = "SELECT count(*), count(DISTINCT visit_id) FROM waveforms";
        assert_eq!(counts(&engine, sql), [6, 6]);
        // The hook ran: the query listed the sources, then read the merge.
        assert_eq!(
            files(&root)
                .iter()
                .filter(|k| k.starts_with("waveforms/"))
                .count(),
            1
        );
    }

    #[test]
    fn an_engine_kept_open_sees_what_was_written_after_its_first_query() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        archive(root, 2);
        let engine = QueryEngine::open(root).unwrap();
        assert_eq!(counts(&engine, COUNTS), [2, 2, 2, 2]);
        append(root, 2..5, "t2");
        assert_eq!(counts(&engine, COUNTS), [5, 5, 5, 5]);
        compact_day(root);
        assert_eq!(counts(&engine, COUNTS), [5, 5, 5, 5]);
    }
}
