//! A search's page as MLflow answers it, serialized straight from its items.

use serde::ser::{Serialize, SerializeMap, Serializer};
use tandem_core::history::{HistoryPage, HistoryPoint};

/// The items under `key`, left out when there are none (as MLflow's
/// protobuf JSON leaves out an empty repeated field), and the next page's
/// token when there is one. Written without a `serde_json::Value` of the
/// page first: at 1,000 experiments a page that tree was a good part of
/// a search's CPU.
pub(crate) struct PageBody<T> {
    key: &'static str,
    items: Vec<T>,
    next_page_token: Option<String>,
}

impl<T> PageBody<T> {
    pub(crate) fn new(key: &'static str, items: Vec<T>, next_page_token: Option<String>) -> PageBody<T> {
        PageBody {
            key,
            items,
            next_page_token,
        }
    }
}

impl<T: Serialize> Serialize for PageBody<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if !self.items.is_empty() {
            map.serialize_entry(self.key, &self.items)?;
        }
        if let Some(token) = &self.next_page_token {
            map.serialize_entry("next_page_token", token)?;
        }
        map.end()
    }
}

/// A page of `metrics/get-history` as JSON, in the shape serde gives
/// `{"metrics": [Metric…], "next_page_token": …}` (each point's fields in
/// `Metric`'s order, empty parts left out), written by hand into a buffer
/// sized for it. A page is up to 25,000 points of one run's metric: serde
/// escaped every field name and the same key and run id once per point and
/// grew its buffer by copying, together about as much of the server's CPU
/// as reading the points from PostgreSQL. Here the key and the run id are
/// escaped once per page.
pub(crate) fn history_json(page: &HistoryPage) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::new();
    out.push(b'{');
    if !page.points.is_empty() {
        out.extend_from_slice(b"\"metrics\":[");
        let mut key = b"{\"key\":".to_vec();
        serde_json::to_writer(&mut key, &page.key)?;
        key.extend_from_slice(b",\"value\":");
        let mut run_id = b",\"run_id\":".to_vec();
        serde_json::to_writer(&mut run_id, &page.run_id)?;
        run_id.push(b'}');
        for (index, point) in page.points.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            let before = out.len();
            out.extend_from_slice(&key);
            write_point(&mut out, point)?;
            out.extend_from_slice(&run_id);
            if index == 0 {
                // The points of a page are alike in length: room for the
                // rest, with some to spare.
                let each = out.len() - before + 1;
                out.reserve((each + each / 4) * (page.points.len() - 1) + 64);
            }
        }
        out.push(b']');
    }
    if let Some(token) = &page.next_page_token {
        if !page.points.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(b"\"next_page_token\":");
        serde_json::to_writer(&mut out, token)?;
    }
    out.push(b'}');
    Ok(out)
}

/// A point's fields from its value to its texts.
fn write_point(out: &mut Vec<u8>, point: &HistoryPoint) -> serde_json::Result<()> {
    // As `float_json` writes it: MLflow's names for what JSON lacks.
    let value = point.value;
    if value.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if value == f64::INFINITY {
        out.extend_from_slice(b"\"Infinity\"");
    } else if value == f64::NEG_INFINITY {
        out.extend_from_slice(b"\"-Infinity\"");
    } else {
        serde_json::to_writer(&mut *out, &value)?;
    }
    out.extend_from_slice(b",\"timestamp\":");
    serde_json::to_writer(&mut *out, &point.timestamp)?;
    out.extend_from_slice(b",\"step\":");
    serde_json::to_writer(&mut *out, &point.step)?;
    if let Some(texts) = &point.texts {
        for (name, text) in [
            (&b",\"dataset_name\":"[..], &texts.dataset_name),
            (b",\"dataset_digest\":", &texts.dataset_digest),
            (b",\"model_id\":", &texts.model_id),
        ] {
            if let Some(text) = text {
                out.extend_from_slice(name);
                serde_json::to_writer(&mut *out, text)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::PageBody;
    use tandem_core::history::{HistoryPage, HistoryPoint, PointTexts};
    use tandem_core::model::Metric;

    #[test]
    fn history_pages_are_written_as_serde_writes_them() {
        #[derive(serde::Serialize)]
        struct Reference<'a> {
            #[serde(skip_serializing_if = "<[Metric]>::is_empty")]
            metrics: &'a [Metric],
            #[serde(skip_serializing_if = "Option::is_none")]
            next_page_token: Option<&'a str>,
        }
        let point = |value: f64, texts: Option<PointTexts>| HistoryPoint {
            value,
            timestamp: 1_700_000_000_123,
            step: -3,
            texts: texts.map(Box::new),
        };
        let points = [
            point(0.1, None),
            point(f64::NAN, None),
            point(
                f64::INFINITY,
                Some(PointTexts {
                    model_id: Some("m-2".into()),
                    ..PointTexts::default()
                }),
            ),
            point(f64::NEG_INFINITY, None),
            point(-0.0, None),
            point(1e300, None),
            point(
                5.0,
                Some(PointTexts {
                    model_id: Some("m-\n1".into()),
                    dataset_name: Some("train \"set\"".into()),
                    dataset_digest: Some("d\\1".into()),
                }),
            ),
        ];
        for (key, run_id) in [("loss", "r1"), ("lo\"ss\u{1}é", "r\\2")] {
            for (count, token) in [
                (7, None),
                (7, Some("tok\"en")),
                (1, Some("t")),
                (0, Some("t")),
                (0, None),
            ] {
                let page = HistoryPage {
                    run_id: run_id.into(),
                    key: key.into(),
                    points: points[..count].to_vec(),
                    next_page_token: token.map(str::to_string),
                };
                let expected = serde_json::to_vec(&Reference {
                    metrics: &page.metrics(),
                    next_page_token: token,
                })
                .unwrap();
                let written = super::history_json(&page).unwrap();
                assert_eq!(
                    String::from_utf8(written).unwrap(),
                    String::from_utf8(expected).unwrap()
                );
            }
        }
    }

    #[test]
    fn empty_pages_leave_their_items_out() {
        let empty = PageBody::<u8>::new("runs", vec![], None);
        assert_eq!(serde_json::to_string(&empty).unwrap(), "{}");
        let page = PageBody::new("runs", vec![1, 2], Some("t".into()));
        assert_eq!(
            serde_json::to_string(&page).unwrap(),
            r#"{"runs":[1,2],"next_page_token":"t"}"#
        );
    }
}
