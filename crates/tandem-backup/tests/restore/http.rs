//! The restore route: progress streamed, then the result or the error.

use super::*;

#[tokio::test]
async fn the_route_streams_progress_then_the_result_or_the_error() {
    let (source, _dir, repo_url, _repo, backups, target) = setup().await;
    let (status, lines) = post_restore(
        &target,
        serde_json::json!({"from": repo_url, "workspace": "team", "backup": backups[0], "as": "restored"}),
    )
    .await;
    assert_eq!(status, 200);
    let (last, progress) = lines.split_last().unwrap();
    assert!(
        !progress.is_empty() && progress.iter().all(|line| line.get("progress").is_some()),
        "{lines:?}"
    );
    assert!(progress.iter().any(|line| line["progress"]["unit"] == "records"));
    assert_eq!(last["result"]["workspace"], "restored", "{lines:?}");
    assert_eq!(last["result"]["position"], source.first.0);
    assert_eq!(restored(&target, "restored").await.1, source.first.2);

    // Refused while running: the stream ends with the error.
    let (status, lines) = post_restore(
        &target,
        serde_json::json!({"from": repo_url, "workspace": "team", "backup": backups[0], "as": "restored"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        lines.last().unwrap()["error"]["error_code"],
        "RESOURCE_ALREADY_EXISTS",
        "{lines:?}"
    );
    // Refused before starting: a status code and one error object.
    let (status, lines) =
        post_restore(&target, serde_json::json!({"from": repo_url, "seq": 1, "at": 5})).await;
    assert_eq!(status, 400);
    assert_eq!(
        lines[0]["error_code"], "INVALID_PARAMETER_VALUE",
        "MLflow's error JSON"
    );
    // A repository the configuration does not allow, and options a request
    // may not bring: refused before anything is read.
    let elsewhere = std::sync::Arc::new(tandem_backup::policy::RepositoryPolicy::new([
        "file:///nowhere/allowed".to_string(),
    ]));
    let body = serde_json::json!({"from": repo_url, "workspace": "team", "backup": backups[0], "as": "copy"});
    let (status, lines) = post_restore_with(&target, body, elsewhere).await;
    assert_eq!(status, 403, "{lines:?}");
    assert!(
        lines[0]["message"].as_str().unwrap().contains("is not allowed"),
        "{lines:?}"
    );
    let (status, lines) = post_restore(
        &target,
        serde_json::json!({"from": repo_url, "backup": backups[0], "options": {"aws_endpoint": "http://169.254.169.254"}}),
    )
    .await;
    assert_eq!(status, 403, "{lines:?}");
    assert!(
        lines[0]["message"]
            .as_str()
            .unwrap()
            .contains("object-store options"),
        "{lines:?}"
    );
    assert!(restored_names(&target).await.iter().all(|name| name != "copy"));
    let (status, lines) =
        post_restore(&target, serde_json::json!({"from": repo_url, "backup": "nope"})).await;
    assert_eq!(status, 200);
    assert_eq!(
        lines.last().unwrap()["error"]["error_code"],
        "RESOURCE_DOES_NOT_EXIST",
        "{lines:?}"
    );
    target.finish().await;
    source.region.finish().await;
}
