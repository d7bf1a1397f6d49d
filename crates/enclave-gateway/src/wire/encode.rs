//! Arrow batches as `RowDescription` fields and `DataRow`s, streamed batch by batch.

use std::sync::Arc;

use duckdb::arrow::datatypes::Schema;
use futures::stream::{self, Stream, StreamExt};
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldInfo};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;

use crate::results::{pg_type, Cell, ColumnReader};
use crate::running::Rows;

pub fn fields(schema: &Schema, format: &Format) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            FieldInfo::new(
                f.name().clone(),
                None,
                None,
                pg_type(f.data_type()),
                format.format_for(i),
            )
        })
        .collect()
}

fn encode(encoder: &mut DataRowEncoder, cell: Cell<'_>) -> PgWireResult<()> {
    match cell {
        Cell::Null => encoder.encode_field(&None::<i8>),
        Cell::Bool(v) => encoder.encode_field(&v),
        Cell::I16(v) => encoder.encode_field(&v),
        Cell::I32(v) => encoder.encode_field(&v),
        Cell::I64(v) => encoder.encode_field(&v),
        Cell::F32(v) => encoder.encode_field(&v),
        Cell::F64(v) => encoder.encode_field(&v),
        Cell::Numeric(v) => encoder.encode_field(&v),
        Cell::Text(v) => encoder.encode_field(&v),
        Cell::Owned(v) => encoder.encode_field(&v),
        Cell::Bytes(v) => encoder.encode_field(&v),
        Cell::Date(v) => encoder.encode_field(&v),
        Cell::Timestamp(v) => encoder.encode_field(&v),
        Cell::TimestampTz(v) => encoder.encode_field(&v),
        Cell::Time(v) => encoder.encode_field(&v),
    }
}

/// The rows of a statement as a stream of `DataRow`s, encoded a batch at a time (so at most
/// one batch is held twice: as Arrow and as wire rows).
pub fn rows(
    rows: Rows,
    fields: Arc<Vec<FieldInfo>>,
) -> impl Stream<Item = PgWireResult<DataRow>> + Send + 'static {
    let state = (rows, DataRowEncoder::new(fields), false);
    stream::unfold(state, |(mut rows, mut encoder, failed)| async move {
        if failed {
            return None;
        }
        match rows.next().await {
            None => None,
            Some(Err(e)) => {
                let error = super::pg_error(e);
                Some((stream::iter(vec![Err(error)]), (rows, encoder, true)))
            }
            Some(Ok(batch)) => {
                let readers: Vec<ColumnReader<'_>> =
                    batch.columns().iter().map(ColumnReader::new).collect();
                let mut out = Vec::with_capacity(batch.num_rows());
                for row in 0..batch.num_rows() {
                    let mut result = Ok(());
                    for r in &readers {
                        result = encode(&mut encoder, r.cell(row));
                        if result.is_err() {
                            break;
                        }
                    }
                    match result {
                        Ok(()) => out.push(Ok(encoder.take_row())),
                        Err(e) => {
                            out.push(Err(PgWireError::ApiError(e.to_string().into())));
                            break;
                        }
                    }
                }
                drop(readers);
                Some((stream::iter(out), (rows, encoder, false)))
            }
        }
    })
    .flatten()
}
