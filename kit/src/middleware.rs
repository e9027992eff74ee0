//! What every RPC of every service passes through, once, as a tower layer
//! on the server: authentication (the caller's [`Principal`] is put in the
//! request's extensions, where [`crate::auth::principal`] finds it; health
//! and reflection need none), one tracing span per call with the service,
//! method, principal, request id, gRPC code and latency, and the call's
//! metrics ([`RpcMetrics`]). A call ends when its trailers pass (so a
//! stream's code is its final one), or with its error headers, or as
//! CANCELLED when the caller goes away first.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Frame, SizeHint};
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tracing::Instrument as _;

use crate::Principal;
use crate::auth::Authenticator;
use crate::metrics::{RpcCall, RpcMetrics};

/// Methods callable without credentials: health checks and reflection.
const OPEN_PREFIXES: &[&str] = &["/grpc.health.v1.Health/", "/grpc.reflection."];

/// The request id a caller may send to follow a call through the logs.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest request id kept (longer ones are cut).
const MAX_REQUEST_ID: usize = 128;

/// Adds [`Rpc`] to a server.
#[derive(Debug, Clone)]
pub struct RpcLayer {
    service: &'static str,
    auth: Authenticator,
    metrics: RpcMetrics,
}

impl RpcLayer {
    pub fn new(service: &'static str, auth: Authenticator, metrics: RpcMetrics) -> Self {
        Self {
            service,
            auth,
            metrics,
        }
    }
}

impl<S> tower::Layer<S> for RpcLayer {
    type Service = Rpc<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Rpc {
            inner,
            service: self.service,
            auth: self.auth.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// Authenticates and traces one call, then hands it to the routes.
#[derive(Debug, Clone)]
pub struct Rpc<S> {
    inner: S,
    service: &'static str,
    auth: Authenticator,
    metrics: RpcMetrics,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> tower::Service<http::Request<Body>> for Rpc<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let call = self.metrics.started(&method);
        let request_id = request_id(request.headers());
        let open = OPEN_PREFIXES.iter().any(|p| method.starts_with(p));
        // `None` for open methods, and for a token signed by a key not
        // cached yet: its identity provider's keys are then fetched
        // (rate-bounded) inside the call's future.
        let (caller, fetch_keys) = if open {
            (None, false)
        } else {
            // Borrowed as metadata and put back, not copied per call.
            let metadata = MetadataMap::from_headers(std::mem::take(request.headers_mut()));
            let caller = self.auth.authenticate_now(&metadata);
            *request.headers_mut() = metadata.into_headers();
            let fetch_keys = caller.is_none();
            (caller, fetch_keys)
        };
        let principal = match &caller {
            Some(Ok(principal)) => principal.to_string(),
            _ => String::new(),
        };
        let span = tracing::info_span!(
            "rpc",
            service = self.service,
            method = %method,
            principal = %principal,
            request_id = %request_id,
            code = tracing::field::Empty,
            latency_us = tracing::field::Empty,
        );
        crate::trace::continue_from(&span, request.headers());
        let mut refused = match caller {
            Some(Ok(principal)) => {
                request.extensions_mut().insert::<Principal>(principal);
                None
            }
            Some(Err(status)) => Some(status),
            None => None,
        };
        let auth = fetch_keys.then(|| self.auth.clone());
        // The routes' clone is the one that was polled ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let finish = Finish(Some((call, span.clone())));
        Box::pin(
            async move {
                if let Some(auth) = auth {
                    let metadata = MetadataMap::from_headers(std::mem::take(request.headers_mut()));
                    let caller = auth.authenticate_call(&metadata).await;
                    *request.headers_mut() = metadata.into_headers();
                    refused = match caller {
                        Ok(principal) => {
                            tracing::Span::current().record("principal", principal.to_string());
                            request.extensions_mut().insert::<Principal>(principal);
                            None
                        }
                        Err(status) => Some(status),
                    };
                }
                let response = match refused {
                    Some(status) => Ok(status.into_http()),
                    None => inner.call(request).await,
                };
                Ok(match response {
                    Ok(response) => finish.watch(response),
                    Err(error) => {
                        finish.done(tonic::Code::Unknown);
                        return Err(error);
                    }
                })
            }
            .instrument(span),
        )
    }
}

/// The end of one call, recorded once: its metrics, the code and latency
/// on its span, and a log line. Dropped unrecorded, the caller went away:
/// CANCELLED.
struct Finish(Option<(RpcCall, tracing::Span)>);

impl Finish {
    /// A call that answered with its code in the headers (an error, or
    /// trailers-only) ends now; any other one ends with its body.
    fn watch(self, response: http::Response<Body>) -> http::Response<Body> {
        match grpc_status(response.headers()) {
            Some(code) => {
                self.done(code);
                response
            }
            None => response.map(|inner| {
                Body::new(Observed {
                    inner,
                    finish: Some(self),
                })
            }),
        }
    }

    fn done(mut self, code: tonic::Code) {
        if let Some((call, span)) = self.0.take() {
            let latency_us = u64::try_from(call.finished(code).as_micros()).unwrap_or(u64::MAX);
            span.record("code", tracing::field::debug(code));
            span.record("latency_us", latency_us);
            let _entered = span.enter();
            match code {
                tonic::Code::Ok => tracing::debug!(?code, latency_us, "rpc answered"),
                tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::DataLoss => {
                    tracing::warn!(?code, latency_us, "rpc failed");
                }
                _ => tracing::info!(?code, latency_us, "rpc refused"),
            }
        }
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        if self.0.is_some() {
            Finish(self.0.take()).done(tonic::Code::Cancelled);
        }
    }
}

/// A response body that ends its call when the trailers (or the end, or
/// an error) pass.
struct Observed {
    inner: Body,
    finish: Option<Finish>,
}

impl Observed {
    fn end(&mut self, code: tonic::Code) {
        if let Some(finish) = self.finish.take() {
            finish.done(code);
        }
    }
}

impl http_body::Body for Observed {
    type Data = <Body as http_body::Body>::Data;
    type Error = <Body as http_body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = grpc_status(trailers).unwrap_or(tonic::Code::Ok);
                    self.end(code);
                }
            }
            Poll::Ready(Some(Err(status))) => {
                let code = status.code();
                self.end(code);
            }
            Poll::Ready(None) => self.end(tonic::Code::Ok),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The `grpc-status` in headers or trailers.
fn grpc_status(headers: &http::HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
}

/// The caller's `x-request-id`, if it is short visible ASCII (else empty).
fn request_id(headers: &http::HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= MAX_REQUEST_ID && v.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer as _, Service as _, ServiceExt as _};

    /// Routes that answer 200 and say whom they were called by.
    fn routes() -> impl tower::Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error = std::convert::Infallible,
        Future = impl Send,
    > + Clone
    + Send
    + 'static {
        tower::service_fn(|request: http::Request<Body>| async move {
            let caller = request
                .extensions()
                .get::<Principal>()
                .map(ToString::to_string)
                .unwrap_or_default();
            Ok(http::Response::builder()
                .header("x-caller", caller)
                .body(Body::empty())
                .unwrap())
        })
    }

    async fn call(path: &str, principal: Option<&str>) -> http::Response<Body> {
        let metrics = RpcMetrics::new(&crate::metrics::Metrics::new());
        let mut service =
            RpcLayer::new("test", Authenticator::development(), metrics).layer(routes());
        let mut request = http::Request::builder().uri(path);
        if let Some(principal) = principal {
            request = request.header("x-airt-principal", principal);
        }
        let request = request.body(Body::empty()).unwrap();
        service.ready().await.unwrap().call(request).await.unwrap()
    }

    #[tokio::test]
    async fn every_call_is_authenticated_once_except_health_and_reflection() {
        let anonymous = call("/airt.audit.v1.AuditService/ListAuditEvents", None).await;
        assert_eq!(anonymous.headers()["grpc-status"], "16", "UNAUTHENTICATED");
        assert!(
            anonymous.headers().get("x-caller").is_none(),
            "never reached the routes"
        );

        let known = call(
            "/airt.audit.v1.AuditService/ListAuditEvents",
            Some("user:alice"),
        )
        .await;
        assert_eq!(known.headers()["x-caller"], "user:alice");

        for open in [
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ] {
            let answered = call(open, None).await;
            assert!(answered.headers().get("grpc-status").is_none(), "{open}");
            assert_eq!(answered.headers()["x-caller"], "", "{open}");
        }
    }

    #[test]
    fn request_ids_are_bounded_and_visible() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(request_id(&headers), "");
        headers.insert(REQUEST_ID_HEADER, "req-42".parse().unwrap());
        assert_eq!(request_id(&headers), "req-42");
        headers.insert(REQUEST_ID_HEADER, "x".repeat(129).parse().unwrap());
        assert_eq!(request_id(&headers), "", "too long");
        headers.insert(REQUEST_ID_HEADER, "a b".parse().unwrap());
        assert_eq!(request_id(&headers), "", "not one token");
    }
}
