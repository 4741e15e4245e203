//! A metric history page from PostgreSQL as one row of arrays.
//!
//! A page is up to 25,000 points. Read as rows, sqlx hands each one over
//! through its row stream and checks each column's type: about twice the
//! database's own work per point (measured on 200,000 points: 1.0 µs of
//! the server's CPU per point, the database 0.45). Read as one row of
//! arrays, a column's values decode in a loop. The database's cost per
//! element of an array is about that of a column of a row, except for
//! text (copied into the array): the three texts a point may carry
//! (model, dataset name and digest; empty for nearly every point) are
//! aggregated only for the points that have any, and each point's NaN
//! flag says which those are.

use sqlx::postgres::{PgPool, PgValueRef};
use sqlx::{Row, ValueRef};
use tandem_core::history::{HistoryPoint, PointTexts};

use super::history::{page_sql, Start};
use super::load;
use crate::error::{StoreError, StoreResult};

/// The total length of a point's three texts, in the database.
const TEXTS: &str = "(octet_length(model_id) + octet_length(dataset_name) + octet_length(dataset_digest))";

/// PostgreSQL's type ids of the arrays' elements.
const INT8: u32 = 20;
const FLOAT8: u32 = 701;
const TEXT: u32 = 25;

/// Up to `limit` points of `run_id`'s `key` from `start`, in the history's
/// order.
pub(super) async fn page(
    pool: &PgPool,
    run_id: &str,
    key: &str,
    start: Start<'_>,
    limit: i64,
) -> StoreResult<Vec<HistoryPoint>> {
    // A plain aggregate takes its input in the order its subquery gives it
    // (ordered, for its LIMIT), and every aggregate of it the same rows in
    // the same sequence; `ordered` checks it anyway. The flags are the NaN
    // flag (0 or 1) plus twice the point's texts' length.
    let sql = format!(
        "SELECT array_agg(timestamp), array_agg(step), array_agg(value), array_agg(is_nan + 2 * {TEXTS}), \
         array_agg(ARRAY[model_id, dataset_name, dataset_digest]) FILTER (WHERE {TEXTS} > 0) \
         FROM ({}) page",
        page_sql(&start)
    );
    let query = sqlx::query(&sql).bind(run_id).bind(key).bind(limit);
    let query = match start {
        Start::First => query,
        Start::Offset(offset) => query.bind(offset),
        Start::After(after) => query
            .bind(after.step)
            .bind(after.timestamp)
            .bind(f64::from_bits(after.value_bits))
            .bind(after.is_nan)
            .bind(after.model_id.as_str())
            .bind(after.dataset_name.as_str())
            .bind(after.dataset_digest.as_str()),
    };
    // Read on connections with sorting off (see `ReadPool::open`).
    let row = query.fetch_one(pool).await.map_err(StoreError::database)?;
    let column = |index: usize| -> StoreResult<Option<Array<'_>>> {
        let value: PgValueRef<'_> = row.try_get_raw(index).map_err(StoreError::database)?;
        if value.is_null() {
            return Ok(None);
        }
        let bytes = value
            .as_bytes()
            .map_err(|error| StoreError::Corrupt(format!("a history page's column {index}: {error}")))?;
        Array::parse(bytes).map(Some)
    };
    let Some(timestamps) = column(0)? else {
        // No rows: every aggregate is NULL.
        return Ok(Vec::new());
    };
    let missing = || StoreError::Corrupt("a history page's column came back empty".into());
    let timestamps = timestamps.int8s()?;
    let steps = column(1)?.ok_or_else(missing)?.int8s()?;
    let values = column(2)?.ok_or_else(missing)?.float8s()?;
    let flags = column(3)?.ok_or_else(missing)?.int8s()?;
    let texts = match column(4)? {
        Some(array) => array.text_triples()?,
        None => Vec::new(),
    };
    let count = timestamps.len();
    if steps.len() != count || values.len() != count || flags.len() != count {
        return Err(StoreError::Corrupt(format!(
            "a history page's columns came back with different lengths ({count} timestamps)"
        )));
    }
    if !ordered(&steps, &timestamps, &values, &flags) {
        return Err(StoreError::Corrupt(
            "a history page came back out of order from the database".into(),
        ));
    }
    let present = |text: &str| (!text.is_empty()).then(|| text.to_string());
    let mut texts = texts.into_iter();
    let mut points = Vec::with_capacity(count);
    for index in 0..count {
        let flag = flags[index];
        let carried = if flag >= 2 {
            let [model_id, dataset_name, dataset_digest] = texts.next().ok_or_else(|| {
                StoreError::Corrupt(
                    "a history page came back with fewer texts than points having them".into(),
                )
            })?;
            PointTexts::of(present(model_id), present(dataset_name), present(dataset_digest))
        } else {
            None
        };
        points.push(HistoryPoint {
            value: load::metric_value(values[index], flag & 1),
            timestamp: timestamps[index],
            step: steps[index],
            texts: carried,
        });
    }
    if texts.next().is_some() {
        return Err(StoreError::Corrupt(
            "a history page came back with more texts than points having them".into(),
        ));
    }
    Ok(points)
}

/// Whether points are in the history's order as far as their numbers tell
/// (step, timestamp, stored value, NaN flag; ties past those are ordered
/// by the texts, as the database compares them).
fn ordered(steps: &[i64], timestamps: &[i64], values: &[f64], flags: &[i64]) -> bool {
    (1..steps.len()).all(|i| {
        let before = (steps[i - 1], timestamps[i - 1], values[i - 1], flags[i - 1] & 1);
        let here = (steps[i], timestamps[i], values[i], flags[i] & 1);
        before.partial_cmp(&here).is_some_and(|order| order.is_le())
    })
}

/// An array in PostgreSQL's binary format (`array_send`): its element
/// type, its dimensions, and its elements, none NULL.
struct Array<'a> {
    element: u32,
    dimensions: Vec<usize>,
    elements: Vec<&'a [u8]>,
}

impl<'a> Array<'a> {
    fn parse(bytes: &'a [u8]) -> StoreResult<Self> {
        let mut reader = Reader { bytes };
        let dimensions = reader.u32()? as usize;
        let _has_nulls = reader.u32()?;
        let element = reader.u32()?;
        if dimensions > 6 {
            return Err(corrupt("more dimensions than PostgreSQL allows"));
        }
        let mut sizes = Vec::with_capacity(dimensions);
        for _ in 0..dimensions {
            let size = reader.u32()? as usize;
            let _lower_bound = reader.u32()?;
            sizes.push(size);
        }
        let total = if dimensions == 0 {
            Some(0)
        } else {
            sizes
                .iter()
                .try_fold(1usize, |total, size| total.checked_mul(*size))
        };
        // Each element takes at least its 4-byte length: a count the bytes
        // cannot hold is refused before anything is allocated for it.
        let Some(total) = total.filter(|total| *total <= reader.bytes.len() / 4) else {
            return Err(corrupt("more elements than bytes"));
        };
        let mut elements = Vec::with_capacity(total);
        for _ in 0..total {
            let length = reader.u32()?;
            if length == u32::MAX {
                return Err(corrupt("a NULL element"));
            }
            elements.push(reader.take(length as usize)?);
        }
        if !reader.bytes.is_empty() {
            return Err(corrupt("bytes after the last element"));
        }
        Ok(Array {
            element,
            dimensions: sizes,
            elements,
        })
    }

    fn expect(&self, element: u32, dimensions: usize) -> StoreResult<()> {
        if self.element != element || self.dimensions.len() != dimensions {
            return Err(corrupt(&format!(
                "an array of type {} in {} dimensions where {element} in {dimensions} was expected",
                self.element,
                self.dimensions.len()
            )));
        }
        Ok(())
    }

    fn int8s(&self) -> StoreResult<Vec<i64>> {
        self.expect(INT8, 1)?;
        self.elements
            .iter()
            .map(|bytes| Ok(i64::from_be_bytes(eight(bytes)?)))
            .collect()
    }

    fn float8s(&self) -> StoreResult<Vec<f64>> {
        self.expect(FLOAT8, 1)?;
        self.elements
            .iter()
            .map(|bytes| Ok(f64::from_bits(u64::from_be_bytes(eight(bytes)?))))
            .collect()
    }

    /// A two-dimensional array of text, three to a row.
    fn text_triples(&self) -> StoreResult<Vec<[&'a str; 3]>> {
        self.expect(TEXT, 2)?;
        if self.dimensions[1] != 3 {
            return Err(corrupt("text rows of other than three"));
        }
        let text =
            |bytes: &'a [u8]| std::str::from_utf8(bytes).map_err(|_| corrupt("text that is not UTF-8"));
        self.elements
            .chunks_exact(3)
            .map(|row| Ok([text(row[0])?, text(row[1])?, text(row[2])?]))
            .collect()
    }
}

fn eight(bytes: &[u8]) -> StoreResult<[u8; 8]> {
    bytes
        .try_into()
        .map_err(|_| corrupt("an 8-byte element of another length"))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("a history page's array from the database has {what}"))
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> StoreResult<&'a [u8]> {
        if self.bytes.len() < count {
            return Err(corrupt("fewer bytes than its header says"));
        }
        let (taken, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Ok(taken)
    }

    fn u32(&mut self) -> StoreResult<u32> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array(element: u32, dimensions: &[u32], elements: &[&[u8]]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend((dimensions.len() as u32).to_be_bytes());
        bytes.extend(0u32.to_be_bytes());
        bytes.extend(element.to_be_bytes());
        for size in dimensions {
            bytes.extend(size.to_be_bytes());
            bytes.extend(1u32.to_be_bytes());
        }
        for element in elements {
            bytes.extend((element.len() as u32).to_be_bytes());
            bytes.extend(*element);
        }
        bytes
    }

    #[test]
    fn arrays_of_numbers_and_text_rows_parse() {
        let (one, minus) = (1i64.to_be_bytes(), (-7i64).to_be_bytes());
        let ints = array(INT8, &[2], &[&one, &minus]);
        assert_eq!(Array::parse(&ints).unwrap().int8s().unwrap(), vec![1, -7]);
        let half = 0.5f64.to_bits().to_be_bytes();
        let floats = array(FLOAT8, &[1], &[&half]);
        assert_eq!(Array::parse(&floats).unwrap().float8s().unwrap(), vec![0.5]);
        let texts = array(TEXT, &[2, 3], &[b"m-1", b"", b"", b"", b"train", b"d\"ig"]);
        assert_eq!(
            Array::parse(&texts).unwrap().text_triples().unwrap(),
            vec![["m-1", "", ""], ["", "train", "d\"ig"]]
        );
    }

    #[test]
    fn arrays_of_another_shape_or_cut_short_are_refused() {
        let one = 1i64.to_be_bytes();
        let ints = array(INT8, &[1], &[&one]);
        assert!(Array::parse(&ints).unwrap().float8s().is_err(), "element type");
        assert!(Array::parse(&ints[..ints.len() - 1]).is_err(), "cut short");
        let mut longer = ints.clone();
        longer.push(0);
        assert!(Array::parse(&longer).is_err(), "trailing bytes");
        let short = array(INT8, &[1], &[&[0, 1]]);
        assert!(Array::parse(&short).unwrap().int8s().is_err(), "element length");
        let huge = array(INT8, &[u32::MAX], &[]);
        assert!(Array::parse(&huge).is_err(), "count past the bytes");
        let mut null = array(INT8, &[1], &[]);
        null.extend(u32::MAX.to_be_bytes());
        assert!(Array::parse(&null).is_err(), "NULL element");
        let flat = array(TEXT, &[3], &[b"a", b"b", b"c"]);
        assert!(
            Array::parse(&flat).unwrap().text_triples().is_err(),
            "one dimension"
        );
    }

    #[test]
    fn order_is_checked_on_the_numbers() {
        assert!(ordered(&[0, 1, 1], &[5, 1, 2], &[0.0, 0.0, 0.0], &[0, 2, 0]));
        assert!(
            ordered(&[1, 1], &[1, 1], &[0.0, 0.0], &[0, 1]),
            "NaN after the number"
        );
        assert!(!ordered(&[1, 0], &[0, 0], &[0.0, 0.0], &[0, 0]));
        assert!(!ordered(&[1, 1], &[1, 1], &[0.5, 0.25], &[0, 0]));
    }
}
