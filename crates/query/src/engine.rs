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
use datafusion::prelude::SessionContext;
use ecg_archive::table::PARTITION_COLUMN;
use ecg_archive::{Table, TABLES};

use crate::QueryError;

/// SQL over an archive root. Tables whose folder is missing are registered
/// empty, with their schema, so a query on a young archive returns no rows
/// rather than "table not found".
pub struct QueryEngine {
    ctx: SessionContext,
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
        let ctx = SessionContext::new();
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
        let result = async { self.ctx.sql(sql).await?.collect().await }.await;
        result.map_err(|e| self.name_damaged_files(e))
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
