//! docs/protocol.md rule 3's send window at the HTTP layer: a request body that is
//! written only while the window is open, checked at the last moment.

/// docs/protocol.md rule 3's send window as the HTTP client sees it: "may the
/// request still be written?" (the claimant's protocol clock against its
/// deadline).
#[derive(Clone)]
pub struct SendWindow(std::sync::Arc<dyn Fn() -> bool + Send + Sync>);

impl SendWindow {
    pub fn new(open: impl Fn() -> bool + Send + Sync + 'static) -> SendWindow {
        SendWindow(std::sync::Arc::new(open))
    }

    fn is_open(&self) -> bool {
        (self.0)()
    }
}

/// The request body closed before it was written.
#[derive(Debug)]
pub(super) struct WindowClosed;

impl std::fmt::Display for WindowClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the send window closed before the request body was written")
    }
}

impl std::error::Error for WindowClosed {}

/// A form body that checks the send window when the HTTP client polls it,
/// i.e. once the connection is up and the request's head is on its way:
/// the last moment before the token's bytes are written. Its length is
/// exact (the request carries `Content-Length`, as a plain form does).
pub(super) struct WindowedForm {
    pub(super) bytes: Option<bytes::Bytes>,
    pub(super) len: u64,
    pub(super) window: SendWindow,
}

impl hyper::body::Body for WindowedForm {
    type Data = bytes::Bytes;
    type Error = WindowClosed;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, WindowClosed>>> {
        let out = match self.bytes.take() {
            None => None,
            Some(_) if !self.window.is_open() => Some(Err(WindowClosed)),
            Some(b) => Some(Ok(hyper::body::Frame::data(b))),
        };
        std::task::Poll::Ready(out)
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_none()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.len)
    }
}

/// Was `e` caused by [`WindowClosed`]?
pub(super) fn window_closed(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<WindowClosed>() {
            return true;
        }
        source = s.source();
    }
    false
}
