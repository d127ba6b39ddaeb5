//! How a request is copied for a retry: [`Replay`], with [`ByClone`] and [`SendOnce`].

/// Makes the copy of a request that a retry sends; `None` when the request cannot be replayed
/// (a streaming body already handed to the transport). Such a request is sent once, and an
/// error the layer would otherwise have retried says so
/// ([`Error::is_not_replayable`](super::Error::is_not_replayable)).
///
/// Any `Fn(&Req) -> Option<Req>` is a replay: `|req: &reqwest::Request| req.try_clone()`.
pub trait Replay<Req> {
    /// A copy of `request` to send again, or `None`.
    fn replay(&self, request: &Req) -> Option<Req>;
}

/// Copies requests with [`Clone`] (the default). An `http::Request<B>` is `Clone` when its
/// body `B` is (`Full<Bytes>`, `String`, `()`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ByClone;

impl<Req: Clone> Replay<Req> for ByClone {
    #[inline]
    fn replay(&self, request: &Req) -> Option<Req> {
        Some(request.clone())
    }
}

/// Never copies: every request is sent once (streaming bodies).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendOnce;

impl<Req> Replay<Req> for SendOnce {
    #[inline]
    fn replay(&self, _: &Req) -> Option<Req> {
        None
    }
}

impl<Req, F: Fn(&Req) -> Option<Req>> Replay<Req> for F {
    #[inline]
    fn replay(&self, request: &Req) -> Option<Req> {
        self(request)
    }
}
