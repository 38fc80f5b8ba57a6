//! The one pooled HTTP client, and one attempt with it. Host names are
//! resolved by [`GuardedResolver`], which drops every address the SSRF guard
//! refuses, so the connection can only go to an address that was checked;
//! IP-literal URLs (which skip resolution) are checked before sending.
//!
//! hyper's pooled client directly, not reqwest: reqwest's per-request layers
//! (redirect and retry wrappers, the URL parsed again from the response's
//! URI, header map copies, proxy checks) were ~9% of the async worker's time
//! in the delivery benchmark, and we follow no redirects and use no proxy.

use crate::guard::{check_ip, check_scheme, AllowList, Refusal};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone)]
pub struct GuardedResolver {
    allow: AllowList,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow = self.allow.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refusal = None;
            let mut ok = Vec::with_capacity(found.len());
            for a in found {
                match check_ip(&allow, &host, a.ip()) {
                    Ok(()) => ok.push(a),
                    Err(r) => refusal = Some(r),
                }
            }
            if ok.is_empty() {
                let err: BoxError = match refusal {
                    Some(r) => Box::new(r),
                    None => format!("{host} has no addresses").into(),
                };
                return Err(err);
            }
            Ok(ok.into_iter())
        })
    }
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>;

/// The shared client: pooled, HTTP/1.1, TLS with Mozilla's roots, no
/// redirects (hyper follows none), guarded resolution, a bounded connect
/// time and a bounded total time per attempt.
#[derive(Clone)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<Connector, Full<Bytes>>,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("TLS set-up: {0}")]
pub struct BuildError(#[from] rustls::Error);

pub fn build(
    allow: &AllowList,
    connect_timeout: Duration,
    timeout: Duration,
) -> Result<Client, BuildError> {
    let mut http = HttpConnector::new_with_resolver(GuardedResolver {
        allow: allow.clone(),
    });
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let inner = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .pool_timer(TokioTimer::new())
        .build(https);
    Ok(Client { inner, timeout })
}

const USER_AGENT: &str = concat!("Outflow/", env!("CARGO_PKG_VERSION"));

/// A request ready to go.
pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a str,
    /// `url` already parsed by the caller, if it was (saves a second parse).
    pub parsed: Option<&'a url::Url>,
    pub headers: &'a [(String, String)],
    pub body: &'a str,
}

/// What came back.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        /// At most the response limit.
        body: Vec<u8>,
        latency: Duration,
    },
    /// Never sent: the guard refused the destination.
    Refused(Refusal),
    /// Timeout, connection or protocol error: worth retrying.
    Failed { error: String, latency: Duration },
    /// The request itself is malformed (bad method or URL): final.
    Invalid(String),
}

pub async fn send(
    client: &Client,
    allow: &AllowList,
    req: Request<'_>,
    response_limit: usize,
) -> Answer {
    let method = match hyper::Method::from_bytes(req.method.as_bytes()) {
        Ok(m) => m,
        Err(_) => return Answer::Invalid(format!("invalid method {:?}", req.method)),
    };
    let parsed;
    let url = match req.parsed {
        Some(u) => u,
        None => match url::Url::parse(req.url) {
            Ok(u) => {
                parsed = u;
                &parsed
            }
            Err(e) => return Answer::Invalid(format!("invalid URL {:?}: {e}", req.url)),
        },
    };
    if let Err(r) = check_scheme(allow, url) {
        return Answer::Refused(r);
    }
    let host = url.host_str().unwrap_or_default();
    let literal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>();
    if let Ok(ip) = literal {
        if let Err(r) = check_ip(allow, host, ip) {
            return Answer::Refused(r);
        }
    }
    let mut builder = hyper::Request::builder().method(method).uri(url.as_str());
    for (k, v) in req.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    if !req
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
    {
        builder = builder.header(hyper::header::USER_AGENT, USER_AGENT);
    }
    let request = match builder.body(Full::new(Bytes::copy_from_slice(req.body.as_bytes()))) {
        Ok(r) => r,
        Err(e) => return Answer::Invalid(format!("invalid request: {e}")),
    };
    let started = Instant::now();
    let exchange = async {
        let resp = client.inner.request(request).await?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        let mut incoming = resp.into_body();
        while body.len() < response_limit {
            match incoming.frame().await {
                Some(Ok(frame)) => {
                    if let Some(c) = frame.data_ref() {
                        let room = response_limit - body.len();
                        body.extend_from_slice(&c[..c.len().min(room)]);
                    }
                }
                // The status arrived; a broken body does not change the verdict.
                Some(Err(_)) | None => break,
            }
        }
        Ok::<_, hyper_util::client::legacy::Error>(Answer::Response {
            status,
            headers,
            body,
            latency: started.elapsed(),
        })
    };
    match tokio::time::timeout(client.timeout, exchange).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => failure(&e, started),
        Err(_) => Answer::Failed {
            error: format!("timeout: no complete answer within {:?}", client.timeout),
            latency: started.elapsed(),
        },
    }
}

fn failure(e: &hyper_util::client::legacy::Error, started: Instant) -> Answer {
    let chain = || {
        std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |s| {
            s.source()
        })
    };
    if let Some(r) = chain().find_map(|s| s.downcast_ref::<Refusal>()) {
        return Answer::Refused(r.clone());
    }
    let timed_out = chain().any(|s| {
        s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    });
    let kind = if timed_out {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let detail = chain()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    Answer::Failed {
        error: format!("{kind}: {detail}"),
        latency: started.elapsed(),
    }
}
