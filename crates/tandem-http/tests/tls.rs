//! Serving over TLS with certificates the test makes (the `openssl` CLI):
//! a client trusting the CA gets its answers; a client that does not, or
//! that speaks plain HTTP to the TLS port, fails — and the server goes on
//! serving the next connection.

use std::path::Path;
use std::process::Command;

use axum::routing::get;
use axum::Router;
use tandem_http::tls::Tls;
use tandem_http::ServeLimits;

/// A CA and a leaf certificate for 127.0.0.1 signed by it, in `dir`.
fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=tandem test CA",
    ]);
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
}

#[tokio::test]
async fn a_tls_server_answers_clients_that_trust_its_ca_and_only_them() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let tls = Tls::from_pem_files(&dir.path().join("leaf.pem"), &dir.path().join("leaf.key")).unwrap();
    let not_after = tls.not_after.clone().expect("the leaf's expiry is read");
    assert!(not_after.ends_with('Z') && not_after.len() == 20, "{not_after}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new().route("/health", get(|| async { "OK" }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tandem_http::serve_with(
        listener,
        app,
        ServeLimits::default(),
        Some(tls),
        "test",
        async {
            let _ = stopped.await;
        },
    ));
    let url = format!("https://{address}/health");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.path().join("ca.pem")).unwrap()).unwrap();
    let trusting = reqwest::Client::builder()
        .add_root_certificate(ca)
        .no_proxy()
        .build()
        .unwrap();
    let untrusting = reqwest::Client::builder().no_proxy().build().unwrap();

    // Refused handshakes and plain HTTP cost their own connection only.
    assert!(
        untrusting.get(&url).send().await.is_err(),
        "an unknown CA is refused"
    );
    assert!(untrusting
        .get(format!("http://{address}/health"))
        .send()
        .await
        .is_err());
    for _ in 0..3 {
        let answer = trusting.get(&url).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.text().await.unwrap(), "OK");
    }

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[test]
fn unreadable_or_mismatched_files_are_refused_with_their_names() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let error =
        Tls::from_pem_files(&dir.path().join("missing.pem"), &dir.path().join("leaf.key")).unwrap_err();
    assert!(error.contains("missing.pem"), "{error}");
    let error = Tls::from_pem_files(&dir.path().join("leaf.pem"), &dir.path().join("ca.key")).unwrap_err();
    assert!(error.contains("do not make a usable pair"), "{error}");
    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    let error = Tls::from_pem_files(&dir.path().join("empty.pem"), &dir.path().join("leaf.key")).unwrap_err();
    assert!(error.contains("no PEM certificate"), "{error}");
}
