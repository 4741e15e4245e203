//! The continuity operations page (Operators): the last verification of the
//! replicas (and one on demand), the doctor's checks (would a failover
//! succeed now), conflicts merged between hot-hot regions,
//! the divergence quarantine (show a record, apply it at the primary), and
//! backups (list a repository, verify one, restore one with progress).
//!
//! A frame like the deployment page: its script reads the JSON API with
//! the viewer's session (`/api/tandem/v1/verify`, `/doctor`, `/conflicts`,
//! `/divergence`, `/backups`, `/restores`), so the console adds no second
//! path to any of these operations and the API's permissions apply.

use axum::response::{IntoResponse, Response};
use maud::html;

use crate::pages::layout;

pub(crate) async fn page(in_deployment: bool) -> Response {
    layout(
        "Continuity",
        "",
        html! {
            h1 { "Continuity" }
            section #verify-section {
                h2 { "Are the replicas equal?" }
                @if in_deployment {
                    p.note { "Every region fingerprints each workspace at the same journal position; differences are named." }
                    div #verify data-source="/api/tandem/v1/verify" { p { "Loading…" } }
                    button #verify-now type="button" { "Verify now" }
                } @else {
                    p.note { "This region runs on its own: there are no replicas to compare." }
                }
            }
            section #doctor-section {
                h2 { "Would a failover succeed now?" }
                @if in_deployment {
                    p.note { "The checks of `tandem doctor`, asked of every region with your credentials: reachability and readiness, the witness, clock skew, lag and RPO, storage, backups, verification, deployment files, the replication secret, TLS." }
                    div #doctor data-source="/api/tandem/v1/doctor" { p { "Asking every region…" } }
                } @else {
                    p.note { "This region runs on its own: there is nothing to fail over to." }
                }
            }
            section #conflicts-section {
                h2 { "Conflicts between regions" }
                p.note { "Concurrent writes of hot-hot classes that this region merged, newest first, with the side that won and why." }
                div #conflicts data-source="/api/tandem/v1/conflicts?limit=200" { p { "Loading…" } }
            }
            section #divergence-section {
                h2 { "Divergence quarantine" }
                @if in_deployment {
                    p.note { "Changes this region wrote past the fork of a newer epoch (a forced failover): kept aside, never lost. Applying one re-applies its change at the primary as a new change." }
                    div #divergence data-source="/api/tandem/v1/divergence" { p { "Loading…" } }
                } @else {
                    p.note { "This region runs on its own: no failover, so nothing can diverge." }
                }
            }
            section #backups-section {
                h2 { "Backups" }
                p.note { "The repository must be one the server is configured for (its [backup] url, or backup_repositories); the server refuses any other." }
                form #backups-form {
                    label { "Repository " input #repository name="from" placeholder="file:///backups or s3://bucket/prefix" size="48" required; }
                    button type="submit" { "List backups" }
                }
                div #backups {}
                div #restore-progress hidden {
                    p #restore-phase {}
                    progress #restore-bar max="1" value="0" {}
                }
                div #backups-outcome {}
            }
        },
    )
    .into_response()
}
