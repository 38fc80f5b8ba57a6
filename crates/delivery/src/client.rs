//! The one pooled HTTP client, and one attempt with it. Host names are
//! resolved by [`GuardedResolver`], which drops every address the SSRF guard
//! refuses, so the connection can only go to an address that was checked;
//! IP-literal URLs (which skip resolution) are checked before sending.

use crate::guard::{check_ip, check_scheme, AllowList, Refusal};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

pub struct GuardedResolver {
    allow: AllowList,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
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
                let err: Box<dyn std::error::Error + Send + Sync> = match refusal {
                    Some(r) => Box::new(r),
                    None => format!("{host} has no addresses").into(),
                };
                return Err(err);
            }
            let addrs: Addrs = Box::new(ok.into_iter());
            Ok(addrs)
        })
    }
}

/// Builds the shared client: pooled, no redirects, bounded connect and total
/// times, guarded resolution.
pub fn build(
    allow: &AllowList,
    connect_timeout: Duration,
    timeout: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .user_agent(concat!("Outflow/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(std::sync::Arc::new(GuardedResolver {
            allow: allow.clone(),
        }))
        .build()
}

/// A request ready to go.
pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a str,
    /// `url` already parsed by the caller, if it was (saves a second parse).
    pub parsed: Option<&'a reqwest::Url>,
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
    client: &reqwest::Client,
    allow: &AllowList,
    req: Request<'_>,
    response_limit: usize,
) -> Answer {
    let method = match reqwest::Method::from_bytes(req.method.as_bytes()) {
        Ok(m) => m,
        Err(_) => return Answer::Invalid(format!("invalid method {:?}", req.method)),
    };
    let url = match req.parsed {
        Some(u) => u.clone(),
        None => match reqwest::Url::parse(req.url) {
            Ok(u) => u,
            Err(e) => return Answer::Invalid(format!("invalid URL {:?}: {e}", req.url)),
        },
    };
    if let Err(r) = check_scheme(allow, &url) {
        return Answer::Refused(r);
    }
    let host = url.host_str().unwrap_or_default().to_owned();
    let literal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>();
    if let Ok(ip) = literal {
        if let Err(r) = check_ip(allow, &host, ip) {
            return Answer::Refused(r);
        }
    }
    let mut builder = client.request(method, url);
    for (k, v) in req.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let started = Instant::now();
    let resp = match builder.body(req.body.to_owned()).send().await {
        Ok(r) => r,
        Err(e) => return failure(e, started),
    };
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
    let mut resp = resp;
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                let room = response_limit.saturating_sub(body.len());
                body.extend_from_slice(&c[..c.len().min(room)]);
                if body.len() >= response_limit {
                    break;
                }
            }
            Ok(None) => break,
            // The status arrived; a broken body does not change the verdict.
            Err(_) => break,
        }
    }
    Answer::Response {
        status,
        headers,
        body,
        latency: started.elapsed(),
    }
}

fn failure(e: reqwest::Error, started: Instant) -> Answer {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Refusal>() {
            return Answer::Refused(r.clone());
        }
        source = s.source();
    }
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    Answer::Failed {
        error: format!("{kind}: {detail}"),
        latency: started.elapsed(),
    }
}
