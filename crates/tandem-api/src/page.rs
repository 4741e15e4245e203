//! A search's page as MLflow answers it, serialized straight from its items.

use serde::ser::{Serialize, SerializeMap, Serializer};
use tandem_core::model::Metric;

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
/// as reading the points from PostgreSQL.
pub(crate) fn history_json(metrics: &[Metric], next_page_token: Option<&str>) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::new();
    out.push(b'{');
    if !metrics.is_empty() {
        out.extend_from_slice(b"\"metrics\":[");
        let mut key = Escaped::default();
        let mut run_id = Escaped::default();
        for (index, metric) in metrics.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            let before = out.len();
            write_metric(&mut out, metric, &mut key, &mut run_id)?;
            if index == 0 {
                // The points of a page are alike in length: room for the
                // rest, with some to spare.
                let each = out.len() - before + 1;
                out.reserve((each + each / 4) * (metrics.len() - 1) + 64);
            }
        }
        out.push(b']');
    }
    if let Some(token) = next_page_token {
        if !metrics.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(b"\"next_page_token\":");
        serde_json::to_writer(&mut out, token)?;
    }
    out.push(b'}');
    Ok(out)
}

/// A string as a JSON string, kept for the next point that has it.
#[derive(Default)]
struct Escaped {
    raw: Option<String>,
    json: Vec<u8>,
}

impl Escaped {
    fn write(&mut self, out: &mut Vec<u8>, text: &str) -> serde_json::Result<()> {
        if self.raw.as_deref() != Some(text) {
            self.json.clear();
            serde_json::to_writer(&mut self.json, text)?;
            self.raw = Some(text.to_string());
        }
        out.extend_from_slice(&self.json);
        Ok(())
    }
}

fn write_metric(
    out: &mut Vec<u8>,
    metric: &Metric,
    key: &mut Escaped,
    run_id: &mut Escaped,
) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"key\":");
    key.write(out, &metric.key)?;
    out.extend_from_slice(b",\"value\":");
    // As `float_json` writes it: MLflow's names for what JSON lacks.
    let value = metric.value;
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
    serde_json::to_writer(&mut *out, &metric.timestamp)?;
    out.extend_from_slice(b",\"step\":");
    serde_json::to_writer(&mut *out, &metric.step)?;
    for (name, text) in [
        (&b",\"dataset_name\":"[..], &metric.dataset_name),
        (b",\"dataset_digest\":", &metric.dataset_digest),
        (b",\"model_id\":", &metric.model_id),
    ] {
        if let Some(text) = text {
            out.extend_from_slice(name);
            serde_json::to_writer(&mut *out, text)?;
        }
    }
    if let Some(id) = &metric.run_id {
        out.extend_from_slice(b",\"run_id\":");
        run_id.write(out, id)?;
    }
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::PageBody;
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
        let point = |key: &str, value: f64, run_id: Option<&str>| Metric {
            key: key.into(),
            value,
            timestamp: 1_700_000_000_123,
            step: -3,
            dataset_name: None,
            dataset_digest: None,
            model_id: None,
            run_id: run_id.map(str::to_string),
        };
        let mut metrics = [
            point("loss", 0.1, Some("r1")),
            point("loss", f64::NAN, Some("r1")),
            point("loss", f64::INFINITY, Some("r1")),
            point("loss", f64::NEG_INFINITY, Some("r2")),
            point("lo\"ss\u{1}é", -0.0, Some("r2")),
            point("loss", 1e300, None),
            point("loss", 5.0, Some("r1")),
        ];
        metrics[6].dataset_name = Some("train \"set\"".into());
        metrics[6].dataset_digest = Some("d\\1".into());
        metrics[6].model_id = Some("m-\n1".into());
        metrics[2].model_id = Some("m-2".into());
        for (metrics, token) in [
            (&metrics[..], None),
            (&metrics[..], Some("tok\"en")),
            (&metrics[..1], Some("t")),
            (&[][..], Some("t")),
            (&[][..], None),
        ] {
            let expected = serde_json::to_vec(&Reference {
                metrics,
                next_page_token: token,
            })
            .unwrap();
            let written = super::history_json(metrics, token).unwrap();
            assert_eq!(
                String::from_utf8(written).unwrap(),
                String::from_utf8(expected).unwrap()
            );
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
