//! `tandem verify [--workspace W] [--json]`: asks the region (or the
//! gateway's primary) to compare every region's replica and prints what
//! differs. Exit 0 when every workspace is equal in every region; 1 when
//! anything differs, a region could not be reached, or a workspace kept
//! changing until it could not be compared.

use serde_json::Value;

use crate::ClientArgs;

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Only this workspace (name or id).
    #[arg(long)]
    pub workspace: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let target = args.client.resolve()?;
    let report = target.client.verify(args.workspace.as_deref()).await?;
    if target.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    if report["ok"] == true {
        Ok(())
    } else {
        anyhow::bail!("{}", summary(&report))
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn list(value: &Value) -> Vec<&Value> {
    value
        .as_array()
        .map(|items| items.iter().collect())
        .unwrap_or_default()
}

/// One line for the exit: what was wrong.
fn summary(report: &Value) -> String {
    let count = |status: &str| {
        list(&report["workspaces"])
            .iter()
            .filter(|w| w["status"] == status)
            .count()
    };
    let mut parts = Vec::new();
    let different = count("different");
    if different > 0 {
        parts.push(format!(
            "{} object(s) differ in {different} workspace(s)",
            text(&report["differences"])
        ));
    }
    let unverified = count("unverified");
    if unverified > 0 {
        parts.push(format!("{unverified} workspace(s) could not be compared"));
    }
    if let Some(unreachable) = report["unreachable"].as_object() {
        if !unreachable.is_empty() {
            let names: Vec<&String> = unreachable.keys().collect();
            parts.push(format!(
                "unreachable: {}",
                names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    if parts.is_empty() {
        "the replicas could not be proven equal".to_string()
    } else {
        format!("the replicas are not proven equal: {}", parts.join("; "))
    }
}

/// The report as text: one line per workspace, then each difference.
pub fn render(report: &Value) -> String {
    let mut out = String::new();
    let regions: Vec<String> = list(&report["regions"]).into_iter().map(text).collect();
    out += &format!(
        "verified by {} across {}\n",
        text(&report["verified_by"]),
        regions.join(", ")
    );
    if let Some(unreachable) = report["unreachable"].as_object() {
        for (region, why) in unreachable {
            out += &format!("region {region} unreachable: {}\n", text(why));
        }
    }
    out += &format!("\n{:<24} {:<11} {}\n", "WORKSPACE", "STATUS", "CLASSES");
    for workspace in list(&report["workspaces"]) {
        let classes: Vec<String> = list(&workspace["classes"]).into_iter().map(text).collect();
        out += &format!(
            "{:<24} {:<11} {}\n",
            text(&workspace["name"]),
            text(&workspace["status"]),
            classes.join(",")
        );
    }
    for workspace in list(&report["workspaces"]) {
        for difference in list(&workspace["differences"]) {
            let digests: Vec<String> = difference["regions"]
                .as_object()
                .map(|regions| {
                    regions
                        .iter()
                        .map(|(region, digest)| format!("{region}={}", text(digest)))
                        .collect()
                })
                .unwrap_or_default();
            out += &format!(
                "differs: {} {}/{} {}  ({})\n",
                text(&workspace["name"]),
                text(&difference["class"]),
                text(&difference["table"]),
                text(&difference["key"]),
                digests.join(" ")
            );
        }
        for reason in list(&workspace["unverified"]) {
            out += &format!("not compared: {} {}\n", text(&workspace["name"]), text(reason));
        }
    }
    if report["ok"] == true {
        out += "every workspace is equal in every region\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_difference_is_printed_with_each_regions_digest() {
        let report = json!({
            "verified_by": "eastus", "regions": ["eastus", "westus"], "unreachable": {},
            "ok": false, "differences": 1,
            "workspaces": [{"name": "default", "status": "different", "classes": ["tracking"],
                "differences": [{"class": "tracking", "table": "run_params", "key": "r1/lr",
                                 "regions": {"eastus": "aa", "westus": "bb"}}]}]
        });
        let text = render(&report);
        assert!(
            text.contains("differs: default tracking/run_params r1/lr  (eastus=aa westus=bb)"),
            "{text}"
        );
        assert_eq!(
            summary(&report),
            "the replicas are not proven equal: 1 object(s) differ in 1 workspace(s)"
        );
    }
}
