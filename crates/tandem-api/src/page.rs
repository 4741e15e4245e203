//! A search's page as MLflow answers it, serialized straight from its items.

use serde::ser::{Serialize, SerializeMap, Serializer};

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

#[cfg(test)]
mod tests {
    use super::PageBody;

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
