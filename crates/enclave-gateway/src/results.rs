//! Results as clients see them: each Arrow column's PostgreSQL type (wire OIDs and the type
//! names of HTTP responses), and each value as a [`Cell`] the wire encoder and the JSON
//! writer share.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use duckdb::arrow::array::{Array, ArrayRef, AsArray};
use duckdb::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Int8Type, Time64MicrosecondType, Time64NanosecondType, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::arrow::util::display::{ArrayFormatter, FormatOptions};
use pgwire::api::Type;
use rust_decimal::Decimal;
use serde_json::Value;

/// The PostgreSQL type a column is reported with.
pub fn pg_type(dt: &DataType) -> Type {
    match dt {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 => Type::INT8,
        DataType::UInt64 => Type::NUMERIC,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Decimal128(p, _) if *p <= 28 => Type::NUMERIC,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Type::VARCHAR,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Type::BYTEA,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Time64(_) => Type::TIME,
        // Intervals, lists, structs, maps, huge integers, wide decimals: their text form.
        _ => Type::TEXT,
    }
}

/// One value, borrowed from its batch where it can be.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Bool(bool),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Numeric(Decimal),
    Text(&'a str),
    Owned(String),
    Bytes(&'a [u8]),
    Date(NaiveDate),
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<Utc>),
    Time(NaiveTime),
}

/// Reads the cells of one column, row by row.
pub struct ColumnReader<'a> {
    array: &'a ArrayRef,
    text: Option<ArrayFormatter<'a>>,
}

static DISPLAY: std::sync::LazyLock<FormatOptions<'static>> =
    std::sync::LazyLock::new(|| FormatOptions::default().with_null(""));

impl<'a> ColumnReader<'a> {
    pub fn new(array: &'a ArrayRef) -> ColumnReader<'a> {
        let text = match pg_type(array.data_type()) {
            Type::TEXT => ArrayFormatter::try_new(array.as_ref(), &DISPLAY).ok(),
            _ => None,
        };
        ColumnReader { array, text }
    }

    pub fn cell(&self, row: usize) -> Cell<'a> {
        let a = self.array;
        if a.is_null(row) {
            return Cell::Null;
        }
        if let Some(f) = &self.text {
            return Cell::Owned(f.value(row).to_string());
        }
        match a.data_type() {
            DataType::Boolean => Cell::Bool(a.as_boolean().value(row)),
            DataType::Int8 => Cell::I16(a.as_primitive::<Int8Type>().value(row) as i16),
            DataType::Int16 => Cell::I16(a.as_primitive::<Int16Type>().value(row)),
            DataType::UInt8 => Cell::I16(a.as_primitive::<UInt8Type>().value(row) as i16),
            DataType::Int32 => Cell::I32(a.as_primitive::<Int32Type>().value(row)),
            DataType::UInt16 => Cell::I32(a.as_primitive::<UInt16Type>().value(row) as i32),
            DataType::Int64 => Cell::I64(a.as_primitive::<Int64Type>().value(row)),
            DataType::UInt32 => Cell::I64(a.as_primitive::<UInt32Type>().value(row) as i64),
            DataType::UInt64 => {
                Cell::Numeric(Decimal::from(a.as_primitive::<UInt64Type>().value(row)))
            }
            DataType::Float16 => Cell::F32(
                a.as_primitive::<duckdb::arrow::datatypes::Float16Type>()
                    .value(row)
                    .to_f32(),
            ),
            DataType::Float32 => Cell::F32(a.as_primitive::<Float32Type>().value(row)),
            DataType::Float64 => Cell::F64(a.as_primitive::<Float64Type>().value(row)),
            DataType::Decimal128(_, scale) => {
                let v = a
                    .as_primitive::<duckdb::arrow::datatypes::Decimal128Type>()
                    .value(row);
                match Decimal::try_from_i128_with_scale(v, (*scale).max(0) as u32) {
                    Ok(d) => Cell::Numeric(d),
                    Err(_) => Cell::Owned(v.to_string()),
                }
            }
            DataType::Utf8 => Cell::Text(a.as_string::<i32>().value(row)),
            DataType::LargeUtf8 => Cell::Text(a.as_string::<i64>().value(row)),
            DataType::Utf8View => Cell::Text(a.as_string_view().value(row)),
            DataType::Binary => Cell::Bytes(a.as_binary::<i32>().value(row)),
            DataType::LargeBinary => Cell::Bytes(a.as_binary::<i64>().value(row)),
            DataType::BinaryView => Cell::Bytes(a.as_binary_view().value(row)),
            DataType::Date32 => a
                .as_primitive::<Date32Type>()
                .value_as_date(row)
                .map_or(Cell::Null, Cell::Date),
            DataType::Date64 => a
                .as_primitive::<Date64Type>()
                .value_as_date(row)
                .map_or(Cell::Null, Cell::Date),
            DataType::Timestamp(unit, tz) => {
                let t = match unit {
                    TimeUnit::Second => a
                        .as_primitive::<TimestampSecondType>()
                        .value_as_datetime(row),
                    TimeUnit::Millisecond => a
                        .as_primitive::<TimestampMillisecondType>()
                        .value_as_datetime(row),
                    TimeUnit::Microsecond => a
                        .as_primitive::<TimestampMicrosecondType>()
                        .value_as_datetime(row),
                    TimeUnit::Nanosecond => a
                        .as_primitive::<TimestampNanosecondType>()
                        .value_as_datetime(row),
                };
                match (t, tz) {
                    (None, _) => Cell::Null,
                    (Some(t), None) => Cell::Timestamp(t),
                    (Some(t), Some(_)) => Cell::TimestampTz(t.and_utc()),
                }
            }
            DataType::Time64(TimeUnit::Microsecond) => a
                .as_primitive::<Time64MicrosecondType>()
                .value_as_time(row)
                .map_or(Cell::Null, Cell::Time),
            DataType::Time64(_) => a
                .as_primitive::<Time64NanosecondType>()
                .value_as_time(row)
                .map_or(Cell::Null, Cell::Time),
            _ => Cell::Null,
        }
    }
}

impl Cell<'_> {
    /// The value in a JSON response: numbers as numbers (decimals as strings, to keep their
    /// precision), bytes as PostgreSQL's `\x…` hex, times in ISO 8601.
    pub fn to_json(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Bool(b) => Value::Bool(*b),
            Cell::I16(v) => (*v).into(),
            Cell::I32(v) => (*v).into(),
            Cell::I64(v) => (*v).into(),
            Cell::F32(v) => float(*v as f64),
            Cell::F64(v) => float(*v),
            Cell::Numeric(d) => Value::String(d.to_string()),
            Cell::Text(s) => Value::String((*s).to_string()),
            Cell::Owned(s) => Value::String(s.clone()),
            Cell::Bytes(b) => {
                let mut s = String::with_capacity(2 + b.len() * 2);
                s.push_str("\\x");
                for byte in *b {
                    s.push_str(&format!("{byte:02x}"));
                }
                Value::String(s)
            }
            Cell::Date(d) => Value::String(d.format("%Y-%m-%d").to_string()),
            Cell::Timestamp(t) => Value::String(t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
            Cell::TimestampTz(t) => Value::String(t.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string()),
            Cell::Time(t) => Value::String(t.format("%H:%M:%S%.f").to_string()),
        }
    }
}

/// JSON has no NaN or infinity: those travel as strings, like PostgreSQL's text form.
fn float(v: f64) -> Value {
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or_else(|| {
            Value::String(if v.is_nan() {
                "NaN".into()
            } else if v > 0.0 {
                "Infinity".into()
            } else {
                "-Infinity".into()
            })
        })
}

/// A batch's rows as JSON arrays.
pub fn json_rows(batch: &RecordBatch) -> Vec<Value> {
    let readers: Vec<ColumnReader<'_>> = batch.columns().iter().map(ColumnReader::new).collect();
    (0..batch.num_rows())
        .map(|row| Value::Array(readers.iter().map(|r| r.cell(row).to_json()).collect()))
        .collect()
}

/// PostgreSQL's name for a type, as HTTP responses report columns.
pub fn type_name(t: &Type) -> &str {
    t.name()
}

/// Writes a statement's batches as an Arrow IPC stream, one chunk per batch.
pub struct IpcStream {
    writer: arrow_ipc::writer::StreamWriter<Vec<u8>>,
}

impl IpcStream {
    /// The stream's header (its schema).
    pub fn start(
        schema: &duckdb::arrow::datatypes::Schema,
    ) -> enclave_core::Result<(IpcStream, Vec<u8>)> {
        let mut writer =
            arrow_ipc::writer::StreamWriter::try_new(Vec::new(), schema).map_err(ipc_error)?;
        let header = std::mem::take(writer.get_mut());
        Ok((IpcStream { writer }, header))
    }

    pub fn batch(&mut self, batch: &RecordBatch) -> enclave_core::Result<Vec<u8>> {
        self.writer.write(batch).map_err(ipc_error)?;
        Ok(std::mem::take(self.writer.get_mut()))
    }

    /// The end-of-stream marker.
    pub fn finish(mut self) -> enclave_core::Result<Vec<u8>> {
        self.writer.finish().map_err(ipc_error)?;
        Ok(std::mem::take(self.writer.get_mut()))
    }
}

fn ipc_error(e: duckdb::arrow::error::ArrowError) -> enclave_core::Error {
    tracing::error!(error = %e, "Arrow IPC encoding failed");
    enclave_core::Error::internal()
}

#[cfg(test)]
mod tests {
    use super::*;
    use duckdb::arrow::array::{Float64Array, Int32Array, StringArray};
    use duckdb::arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    #[test]
    fn cells_become_json() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int32, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("f", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec![Some("a"), Some("b")])),
                Arc::new(Float64Array::from(vec![1.5, f64::NAN])),
            ],
        )
        .unwrap();
        assert_eq!(
            json_rows(&batch),
            vec![
                serde_json::json!([1, "a", 1.5]),
                serde_json::json!([null, "b", "NaN"])
            ]
        );
        assert_eq!(pg_type(&DataType::Int32), Type::INT4);
        assert_eq!(type_name(&pg_type(&DataType::Utf8)), "varchar");
    }
}
