//! Typed, null-aware access to the columns of a [`FlowBatch`](flowlog_model::FlowBatch),
//! shared by every encoder.
//!
//! A [`Column`] is bound once per batch, so the per-row code neither downcasts nor goes
//! through Arrow's checked accessors.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMillisecondType, UInt32Type};
use arrow_array::{Array, PrimitiveArray, StringViewArray};
use arrow_schema::{DataType, Field, TimeUnit};
use flowlog_model::is_json_field;

use crate::json::{str_bound, Number, Out, NUMBER_BOUND};
use crate::EncodeError;

/// The values of a column, by storage type.
#[derive(Clone, Copy)]
pub enum Values<'a> {
    Text(&'a StringViewArray),
    /// Text that is a JSON value (enrichment's tags and lists), written as it is.
    Json(&'a StringViewArray),
    Float64(&'a PrimitiveArray<Float64Type>),
    Int32(&'a PrimitiveArray<Int32Type>),
    Int64(&'a PrimitiveArray<Int64Type>),
    /// Milliseconds since the epoch, UTC.
    Time(&'a PrimitiveArray<TimestampMillisecondType>),
}

/// Validity bits in Arrow's layout, from bit `offset` on.
type Validity<'a> = (&'a [u8], usize);

/// One column of a batch.
#[derive(Clone, Copy)]
pub struct Column<'a> {
    /// The values; for a dictionary-encoded column, the distinct values, which rows reach
    /// through `keys`.
    pub values: Values<'a>,
    /// Validity of `values`, when they hold nulls.
    validity: Option<Validity<'a>>,
    /// Dictionary keys: one per row, indexing `values`.
    pub keys: Option<Keys<'a>>,
}

/// The keys of a dictionary-encoded column (enrichment columns are stored this way: the
/// distinct values of a batch, one key per row). Columns filled from the same lookups
/// share their keys, which is how the template engine sees that a group of members
/// depends on the key alone and writes it once per distinct key.
#[derive(Clone, Copy)]
pub struct Keys<'a> {
    pub keys: &'a [u32],
    validity: Option<Validity<'a>>,
}

impl Keys<'_> {
    #[inline(always)]
    pub fn is_null(&self, row: usize) -> bool {
        is_unset(self.validity, row)
    }

    /// True if both are the same keys (the same buffer, not merely equal values).
    pub fn same(&self, other: &Keys<'_>) -> bool {
        std::ptr::eq(self.keys, other.keys)
    }
}

#[inline(always)]
fn is_unset(validity: Option<Validity<'_>>, row: usize) -> bool {
    validity.is_some_and(|(bits, offset)| {
        let i = row + offset;
        bits[i / 8] & (1 << (i % 8)) == 0
    })
}

fn validity(array: &dyn Array) -> Option<Validity<'_>> {
    array
        .nulls()
        .filter(|n| n.null_count() > 0)
        .map(|n| (n.validity(), n.offset()))
}

impl<'a> Column<'a> {
    pub fn new(field: &Field, array: &'a dyn Array) -> Result<Self, EncodeError> {
        if let Some(dictionary) = array.as_dictionary_opt::<UInt32Type>() {
            let values = Self::new(field, dictionary.values().as_ref())?;
            return Ok(Self {
                keys: Some(Keys {
                    keys: dictionary.keys().values(),
                    validity: validity(dictionary.keys()),
                }),
                ..values
            });
        }
        let values = match array.data_type() {
            DataType::Utf8View if is_json_field(field) => Values::Json(array.as_string_view()),
            DataType::Utf8View => Values::Text(array.as_string_view()),
            DataType::Float64 => Values::Float64(array.as_primitive()),
            DataType::Int32 => Values::Int32(array.as_primitive()),
            DataType::Int64 => Values::Int64(array.as_primitive()),
            DataType::Timestamp(TimeUnit::Millisecond, _) => Values::Time(array.as_primitive()),
            other => {
                return Err(EncodeError::UnsupportedColumn {
                    column: field.name().to_string(),
                    data_type: other.to_string(),
                })
            }
        };
        Ok(Self {
            values,
            validity: validity(array),
            keys: None,
        })
    }

    /// Where the value of `row` is in `values` (the row itself unless the column is
    /// dictionary-encoded).
    #[inline(always)]
    pub fn index(&self, row: usize) -> usize {
        match self.keys {
            Some(keys) => keys.keys[row] as usize,
            None => row,
        }
    }

    /// Read from the bits directly: `NullBuffer::is_null` asserts the index and goes
    /// through the buffer's length every time, which costs more than writing a value.
    #[inline(always)]
    pub fn is_null(&self, row: usize) -> bool {
        match self.keys {
            Some(keys) => keys.is_null(row) || is_unset(self.validity, self.index(row)),
            None => is_unset(self.validity, row),
        }
    }

    /// The most bytes the value of any row takes as JSON.
    pub fn value_bound(&self) -> usize {
        match self.values {
            Values::Text(a) => str_bound(longest_view(a)),
            Values::Json(a) => longest_view(a),
            _ => NUMBER_BOUND,
        }
    }

    /// Writes the value of `row` (which must not be null) as JSON: text as a string,
    /// numbers as numbers, times as Unix seconds.
    ///
    /// Numbers are formatted inline (not behind a function pointer) so they stay in
    /// registers: a copy through the stack stalls store-to-load forwarding.
    #[inline(always)]
    pub fn write_value<const PLAIN: bool>(&self, out: &mut Out<'_>, row: usize) {
        let row = self.index(row);
        match self.values {
            Values::Text(a) => out.view_str::<PLAIN>(a, row),
            Values::Json(a) => out.bytes(a.value(row).as_bytes()),
            Values::Float64(a) => write_float(out, a.value(row)),
            Values::Int32(a) => Number::integer(a.value(row).into()).write(out),
            Values::Int64(a) => Number::integer(a.value(row)).write(out),
            Values::Time(a) => Number::epoch_seconds(a.value(row)).write(out),
        }
    }

    /// The text of `row`, if this is a text column and the row has a value.
    #[inline]
    pub fn text(&self, row: usize) -> Option<&'a str> {
        match self.values {
            Values::Text(a) if !self.is_null(row) => Some(a.value(self.index(row))),
            _ => None,
        }
    }

    /// The JSON text of `row`, if this is a JSON column and the row has a value.
    #[inline]
    pub fn json(&self, row: usize) -> Option<&'a str> {
        match self.values {
            Values::Json(a) if !self.is_null(row) => Some(a.value(self.index(row))),
            _ => None,
        }
    }

    /// The number (or time in milliseconds) of `row`, if this is a numeric column and the
    /// row has a value.
    #[inline]
    pub fn int(&self, row: usize) -> Option<i64> {
        if self.is_null(row) {
            return None;
        }
        let row = self.index(row);
        match self.values {
            Values::Text(_) | Values::Json(_) | Values::Float64(_) => None,
            Values::Int32(a) => Some(a.value(row).into()),
            Values::Int64(a) => Some(a.value(row)),
            Values::Time(a) => Some(a.value(row)),
        }
    }

    /// The raw string view of `row` (length in the low 32 bits, then the first bytes or a
    /// buffer reference): values of up to 12 bytes compare equal exactly when their views
    /// do, which makes matching short codes a single comparison. See [`short_view`].
    #[inline(always)]
    pub fn view(&self, row: usize) -> Option<u128> {
        match self.values {
            Values::Text(a) if !self.is_null(row) => Some(a.views()[self.index(row)]),
            _ => None,
        }
    }
}

/// A float as JSON: the shortest text that reads back as the same number; not finite
/// values (which JSON cannot carry) as `null`.
fn write_float(out: &mut Out<'_>, value: f64) {
    if value.is_finite() {
        let mut buffer = ryu::Buffer::new();
        out.bytes(buffer.format_finite(value).as_bytes());
    } else {
        out.bytes(b"null");
    }
}

/// The string view Arrow stores for a value of at most 12 bytes.
pub(crate) const fn short_view(s: &str) -> u128 {
    let bytes = s.as_bytes();
    assert!(bytes.len() <= 12, "only short values are inlined in a view");
    let mut view = bytes.len() as u128;
    let mut i = 0;
    while i < bytes.len() {
        view |= (bytes[i] as u128) << (32 + 8 * i);
        i += 1;
    }
    view
}

/// The length of the longest value of a string-view array (nulls included: their views
/// are zero).
pub(crate) fn longest_view(a: &StringViewArray) -> usize {
    a.views().iter().map(|v| *v as u32).max().unwrap_or(0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_views_match_arrow() {
        let values = ["ACCEPT", "", "exactly12byt", "ingress"];
        let array = StringViewArray::from_iter_values(values);
        for (i, v) in values.iter().enumerate() {
            assert_eq!(array.views()[i], short_view(v), "{v}");
        }
    }
}
