//! Artifacts in the console: the listing under a run's or logged model's
//! artifact root, and a preview page for one artifact — text, JSON (pretty),
//! YAML and `MLmodel`, the head of a CSV as a table, images — with its
//! download link. Previews read at most `PREVIEW_BYTES` of the artifact.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;
use tandem_api::error::ApiError;
use tandem_api::extract::Ws;
use tandem_api::AppState;
use tandem_artifacts::ArtifactKey;
use tandem_store::WorkspaceRef;

use crate::pages::{base, layout, message_page, store_error};

/// The most of an artifact a preview reads.
pub const PREVIEW_BYTES: u64 = 256 * 1024;
/// Rows of a CSV preview.
const CSV_ROWS: usize = 50;

/// One artifact under a root: its path below the root, its path in the
/// workspace, its size.
pub(crate) struct Listed {
    pub relative: String,
    pub path: String,
    pub size: i64,
}

/// The artifacts under `artifact_uri` (a proxied `mlflow-artifacts:` URI);
/// none when the root is elsewhere.
pub(crate) async fn listing(
    state: &AppState,
    ws: &WorkspaceRef,
    artifact_uri: &str,
) -> Result<Vec<Listed>, Response> {
    let Some(root) = tandem_store::proxied_artifact_path(artifact_uri) else {
        return Ok(Vec::new());
    };
    let root = format!("{}/", root.trim_end_matches('/'));
    let entries = state
        .store
        .list_artifact_entries(ws, &root)
        .await
        .map_err(store_error)?;
    Ok(entries
        .into_iter()
        .map(|entry| Listed {
            relative: entry.path.strip_prefix(&root).unwrap_or(&entry.path).to_string(),
            path: entry.path,
            size: entry.size,
        })
        .collect())
}

/// The listing as a table: each artifact with its preview and download.
pub(crate) fn table(prefix: &str, listed: &[Listed]) -> Markup {
    html! {
        @if listed.is_empty() { p.empty { "No artifact." } }
        @else {
            table.artifacts {
                thead { tr { th { "Path" } th { "Size" } th {} } }
                tbody {
                    @for item in listed {
                        tr {
                            td { a href={ (prefix) "/artifact?path=" (encode(&item.path)) } { (item.relative) } }
                            td.number { (human_size(item.size)) }
                            td { a download href={ (download_href(prefix, &item.path)) } { "download" } }
                        }
                    }
                }
            }
        }
    }
}

fn encode(path: &str) -> String {
    url::form_urlencoded::byte_serialize(path.as_bytes()).collect()
}

fn download_href(prefix: &str, path: &str) -> String {
    let segments: Vec<String> = path
        .split('/')
        .map(|segment| encode(segment).replace('+', "%20"))
        .collect();
    format!(
        "{prefix}/api/2.0/mlflow-artifacts/artifacts/{}",
        segments.join("/")
    )
}

pub(crate) fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// What a preview shows, by the artifact's name.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Image,
    Json,
    Csv(u8),
    Text,
    Other,
}

fn kind(path: &str) -> Kind {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name == "MLmodel" || name == "requirements.txt" || name == "Dockerfile" {
        return Kind::Text;
    }
    let extension = name
        .rsplit_once('.')
        .map(|(_, extension)| extension.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "png" | "jpg" | "jpeg" | "gif" | "svg" | "webp" => Kind::Image,
        "json" => Kind::Json,
        "csv" => Kind::Csv(b','),
        "tsv" => Kind::Csv(b'\t'),
        "txt" | "log" | "md" | "py" | "yaml" | "yml" | "toml" | "cfg" | "ini" | "sh" | "r" | "sql"
        | "html" | "htm" | "xml" | "ipynb" | "mlmodel" => Kind::Text,
        _ => Kind::Other,
    }
}

#[derive(Deserialize)]
pub(crate) struct PreviewQuery {
    #[serde(default)]
    path: String,
}

/// `/artifact?path=…`: one artifact of the workspace, previewed.
pub(crate) async fn preview(
    State(state): State<AppState>,
    Ws(ws): Ws,
    Query(query): Query<PreviewQuery>,
) -> Response {
    let path = match ArtifactKey::parse(&query.path) {
        Ok(path) if !query.path.is_empty() => path,
        Ok(_) => {
            return message_page(
                StatusCode::BAD_REQUEST,
                "No artifact",
                "Say which artifact: ?path=…",
            )
        }
        Err(error) => {
            return message_page(
                StatusCode::BAD_REQUEST,
                "Invalid path",
                &ApiError::from(error).message,
            )
        }
    };
    let listed = match state.store.list_artifact_entries(&ws, path.as_str()).await {
        Ok(entries) => entries.into_iter().find(|entry| entry.path == path.as_str()),
        Err(error) => return store_error(error),
    };
    let Some(entry) = listed else {
        return message_page(
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("No artifact '{}' in workspace '{}'.", path.as_str(), ws.name),
        );
    };
    let prefix = base(&ws);
    let download = download_href(&prefix, &entry.path);
    let kind = kind(&entry.path);
    let body = match kind {
        Kind::Image => html! { img.preview src=(download) alt=(entry.path); },
        Kind::Other => html! { p.empty { "No preview for this kind of file." } },
        Kind::Json | Kind::Csv(_) | Kind::Text => {
            let key = match tandem_artifacts::workspace_artifact_key(&ws.workspace_id, Some(&path)) {
                Ok(key) => key,
                Err(error) => {
                    return message_page(
                        StatusCode::BAD_REQUEST,
                        "Invalid path",
                        &ApiError::from(error).message,
                    )
                }
            };
            let end = (entry.size.max(0) as u64).min(PREVIEW_BYTES);
            let bytes = if end == 0 {
                Default::default()
            } else {
                match state.artifacts.get_range(&key, 0, end).await {
                    Ok(bytes) => bytes,
                    Err(error) => {
                        let error = ApiError::from(error);
                        return message_page(error.status(), "Cannot read the artifact", &error.message);
                    }
                }
            };
            let truncated = (entry.size.max(0) as u64) > end;
            render_text(&kind, &bytes, truncated)
        }
    };
    layout(
        &entry.path,
        &prefix,
        html! {
            h1 { (entry.path) }
            p { (human_size(entry.size)) " · " a download href=(download) { "download" } }
            (body)
        },
    )
    .into_response()
}

fn render_text(kind: &Kind, bytes: &[u8], truncated: bool) -> Markup {
    // A cut may fall inside a character: keep the valid prefix.
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) if truncated && error.error_len().is_none() => {
            std::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return html! { p.empty { "Binary content: no preview." } },
    };
    let note = html! {
        @if truncated { p.note { "Showing the first " (human_size(PREVIEW_BYTES as i64)) "." } }
    };
    match kind {
        Kind::Json if !truncated => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) => html! { pre.preview { (serde_json::to_string_pretty(&value).unwrap_or_default()) } },
            Err(error) => html! {
                p.note { "Not valid JSON (" (error) "); shown as text." }
                pre.preview { (text) }
            },
        },
        Kind::Csv(delimiter) => {
            let mut reader = csv::ReaderBuilder::new()
                .delimiter(*delimiter)
                .has_headers(false)
                .flexible(true)
                .from_reader(text.as_bytes());
            let mut rows: Vec<Vec<String>> = Vec::new();
            for record in reader.records().take(CSV_ROWS + 1) {
                match record {
                    Ok(record) => rows.push(record.iter().map(str::to_string).collect()),
                    // The cut of a truncated file ends the table, nothing else.
                    Err(_) => break,
                }
            }
            let (header, rows) = rows
                .split_first()
                .map(|(h, r)| (h.clone(), r.to_vec()))
                .unwrap_or_default();
            html! {
                (note)
                table.csv {
                    thead { tr { @for cell in &header { th { (cell) } } } }
                    tbody { @for row in &rows { tr { @for cell in row { td { (cell) } } } } }
                }
                p.note { "The first " (rows.len()) " rows." }
            }
        }
        _ => html! { (note) pre.preview { (text) } },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_names() {
        assert_eq!(kind("model/MLmodel"), Kind::Text);
        assert_eq!(kind("plots/roc.PNG"), Kind::Image);
        assert_eq!(kind("data/eval.csv"), Kind::Csv(b','));
        assert_eq!(kind("m/model.pkl"), Kind::Other);
        assert_eq!(kind("conf.yaml"), Kind::Text);
    }

    #[test]
    fn csv_heads_are_tables_and_json_is_pretty() {
        let table = render_text(&Kind::Csv(b','), b"a,b\n1,\"x,y\"\n2,3\n", false).into_string();
        assert!(
            table.contains("<th>a</th>") && table.contains("<td>x,y</td>"),
            "{table}"
        );
        let json = render_text(&Kind::Json, br#"{"a":[1,2]}"#, false).into_string();
        assert!(json.contains("&quot;a&quot;: ["), "{json}");
        let escaped = render_text(&Kind::Text, b"<script>", false).into_string();
        assert!(escaped.contains("&lt;script&gt;"));
        assert!(render_text(&Kind::Text, &[0xff, 0xfe], false)
            .into_string()
            .contains("Binary"));
        // A cut inside a character keeps what came before it.
        let cut = render_text(&Kind::Text, "é".as_bytes().split_at(1).0, true).into_string();
        assert!(cut.contains("Showing the first"), "{cut}");
    }

    #[test]
    fn download_links_encode_each_segment() {
        assert_eq!(
            download_href("/w/x", "1/abc/artifacts/a b/c#d.txt"),
            "/w/x/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/a%20b/c%23d.txt"
        );
        assert_eq!(human_size(1536), "1.5 KB");
    }
}
