//! A `tandem_server::serve` running in the test's runtime on a port of its
//! own, ready (`/ready` answered 200) before the test goes on.

use tandem_server::ServerConfig;

pub struct Running {
    pub base: String,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), tandem_server::ServerError>>>,
}

impl Running {
    /// Serves `config` on `listener` and waits until it is ready.
    pub async fn start(config: ServerConfig, listener: tokio::net::TcpListener) -> Running {
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(tandem_server::serve(config, listener, async {
            let _ = stopped.await;
        }));
        // Redirects are answers in these tests (the console sends anonymous
        // visitors to its sign-in page).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut ready = false;
        for _ in 0..200 {
            if let Ok(response) = http.get(format!("{base}/ready")).send().await {
                if response.status().is_success() {
                    ready = true;
                    break;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert!(ready, "the server did not become ready");
        Running {
            base,
            http,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the server and checks it stopped cleanly.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}
