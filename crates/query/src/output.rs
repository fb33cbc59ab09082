//! Query results as text: a boxed table for people, CSV and JSON for tools.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::QueryError;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// A boxed text table; `(0 rows)` when there are none.
    Table,
    /// RFC 4180 CSV with a header row; list columns as `[a, b]` text.
    Csv,
    /// One JSON array of objects, one object per row, nulls explicit;
    /// lists as arrays, timestamps and dates as ISO 8601 strings.
    Json,
}

/// Formats query results; the text ends with a newline.
pub fn format_batches(batches: &[RecordBatch], format: OutputFormat) -> Result<String, QueryError> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    match format {
        OutputFormat::Table => {
            if rows == 0 {
                return Ok("(0 rows)\n".to_string());
            }
            Ok(format!(
                "{}\n",
                arrow::util::pretty::pretty_format_batches(batches)?
            ))
        }
        OutputFormat::Csv => {
            let mut out = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for b in batches {
                    w.write(&nested_as_text(b)?)?;
                }
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
        OutputFormat::Json => {
            let mut out = Vec::new();
            {
                let mut w = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow::json::writer::JsonArray>(&mut out);
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                w.write_batches(&refs)?;
                w.finish()?;
            }
            if rows == 0 {
                // The writer prints nothing for no rows; an empty array is
                // still valid JSON for a tool.
                return Ok("[]\n".to_string());
            }
            out.push(b'\n');
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
    }
}

/// CSV has no lists or structs: such columns become their display text.
fn nested_as_text(batch: &RecordBatch) -> Result<RecordBatch, QueryError> {
    let nested = |dt: &DataType| dt.is_nested();
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| nested(f.data_type()))
    {
        return Ok(batch.clone());
    }
    let opts = FormatOptions::default();
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (f, col) in batch.schema().fields().iter().zip(batch.columns()) {
        if nested(f.data_type()) {
            let fmt = ArrayFormatter::try_new(col.as_ref(), &opts)?;
            let text: StringArray = (0..col.len())
                .map(|i| (!col.is_null(i)).then(|| fmt.value(i).to_string()))
                .collect();
            fields.push(Field::new(f.name(), DataType::Utf8, f.is_nullable()));
            columns.push(Arc::new(text));
        } else {
            fields.push(f.as_ref().clone());
            columns.push(col.clone());
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}
