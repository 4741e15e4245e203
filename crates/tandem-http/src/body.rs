//! A request body that fails when it makes no progress for too long.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

pin_project_lite::pin_project! {
    /// `inner`, failing with a timeout error once no frame arrived for
    /// `timeout` (the clock restarts with every frame).
    pub struct Stalling<B> {
        #[pin]
        inner: B,
        #[pin]
        deadline: Option<Sleep>,
        timeout: Duration,
    }
}

impl<B> Stalling<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        Stalling {
            inner,
            deadline: None,
            timeout,
        }
    }
}

/// The error a stalled body ends with.
#[derive(Debug)]
pub struct BodyStalled(pub Duration);

impl std::fmt::Display for BodyStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body made no progress for {} s; the request was abandoned",
            self.0.as_secs()
        )
    }
}

impl std::error::Error for BodyStalled {}

impl<B> Body for Stalling<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                this.deadline.set(None);
                Poll::Ready(frame.map(|result| result.map_err(Into::into)))
            }
            Poll::Pending => {
                if this.deadline.is_none() {
                    this.deadline.set(Some(tokio::time::sleep(*this.timeout)));
                }
                match this.deadline.as_mut().as_pin_mut().map(|sleep| sleep.poll(cx)) {
                    Some(Poll::Ready(())) => Poll::Ready(Some(Err(Box::new(BodyStalled(*this.timeout))))),
                    _ => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that never yields.
    struct Silent;

    impl Body for Silent {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_fails_after_the_timeout() {
        let mut body = Box::pin(Stalling::new(Silent, Duration::from_secs(5)));
        let started = tokio::time::Instant::now();
        let outcome = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
        let error = outcome.unwrap().unwrap_err();
        assert!(error.to_string().contains("no progress for 5 s"), "{error}");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
}
