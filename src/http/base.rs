//! [`BaseUrl`]: one HTTP client pointed at one upstream, so a single client serves several
//! [`Upstreams`](crate::tower::Upstreams).

use std::task::{Context, Poll};

use http::uri::{Parts, PathAndQuery, Scheme};
use http::{Request, Uri};
use tower_service::Service;

use crate::error::ConfigError;

/// Sends every request to one base URL: the request's scheme and authority are replaced by
/// the base's, and the base's path (if any) is put before the request's path. Requests can
/// then be written with a path only (`/v1/charges`). Headers are left as they are: a `Host`
/// header the request already carries is not rewritten (hyper sets one from the URI when
/// there is none).
///
/// ```
/// use switchover::http::BaseUrl;
/// use tower::{Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let echo = tower::service_fn(|req: http::Request<()>| async move {
///     Ok::<_, std::convert::Infallible>(req.uri().to_string())
/// });
/// let mut eu = BaseUrl::new(echo, "https://eu.api.example/payments")?;
/// let uri = eu.ready().await?.call(http::Request::get("/v1/charges?limit=3").body(())?).await?;
/// assert_eq!(uri, "https://eu.api.example/payments/v1/charges?limit=3");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct BaseUrl<S> {
    inner: S,
    scheme: Scheme,
    authority: http::uri::Authority,
    prefix: String,
}

impl<S> BaseUrl<S> {
    /// Points `inner` at `base` (`"http://127.0.0.1:8080"`, `"https://api.example/v2"`).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] (field `base_url`) when `base` is not an absolute URL with a scheme
    /// and an authority, or has a query.
    pub fn new(inner: S, base: &str) -> Result<Self, ConfigError> {
        let uri: Uri = base
            .parse()
            .map_err(|e| ConfigError::new("base_url", format!("`{base}`: {e}")))?;
        let parts = uri.into_parts();
        let (Some(scheme), Some(authority)) = (parts.scheme, parts.authority) else {
            return Err(ConfigError::new(
                "base_url",
                format!("`{base}` needs a scheme and a host (`http://host:port`)"),
            ));
        };
        if parts
            .path_and_query
            .as_ref()
            .is_some_and(|p| p.query().is_some())
        {
            return Err(ConfigError::new(
                "base_url",
                format!("`{base}` has a query"),
            ));
        }
        let prefix = parts
            .path_and_query
            .map(|p| p.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        Ok(BaseUrl {
            inner,
            scheme,
            authority,
            prefix,
        })
    }

    /// The base URL, as `scheme://authority/prefix`.
    pub fn base(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.prefix)
    }

    fn rebase(&self, uri: Uri) -> Uri {
        let mut parts = Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        let old = uri.into_parts().path_and_query;
        let path_and_query = match (self.prefix.is_empty(), old) {
            (true, old) => old.unwrap_or_else(|| PathAndQuery::from_static("/")),
            (false, old) => {
                let rest = old.as_ref().map_or("/", PathAndQuery::as_str);
                let joined = format!("{}{rest}", self.prefix);
                joined
                    .parse()
                    .unwrap_or_else(|_| PathAndQuery::from_static("/"))
            }
        };
        parts.path_and_query = Some(path_and_query);
        // Scheme, authority and path all come from valid URIs.
        Uri::from_parts(parts).unwrap_or_default()
    }
}

impl<S, B> Service<Request<B>> for BaseUrl<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> S::Future {
        let uri = std::mem::take(request.uri_mut());
        *request.uri_mut() = self.rebase(uri);
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rebased(base: &str, uri: &str) -> String {
        BaseUrl::new((), base)
            .unwrap()
            .rebase(uri.parse().unwrap())
            .to_string()
    }

    #[test]
    fn replaces_the_origin_and_keeps_path_and_query() {
        assert_eq!(
            rebased("http://127.0.0.1:8080", "/v1/x?a=1"),
            "http://127.0.0.1:8080/v1/x?a=1"
        );
        assert_eq!(rebased("http://b:1", "http://a:2/p"), "http://b:1/p");
        assert_eq!(rebased("https://h/api/", "/v1"), "https://h/api/v1");
        assert_eq!(rebased("https://h/api", "/"), "https://h/api/");
    }

    #[test]
    fn refuses_what_is_not_a_base() {
        for bad in ["/just/a/path", "127.0.0.1:80", "http://h/?q=1", "not a url"] {
            assert_eq!(
                BaseUrl::new((), bad).unwrap_err().field(),
                "base_url",
                "{bad}"
            );
        }
    }
}
