//! The `http` router: asks an nginx-compatible `auth_http` service ([`super::auth_http`]) where
//! a login goes, within `timeout`, reading at most [`MAX_RESPONSE_HEAD`] octets of the answer.
//!
//! `OK` answers are cached (moka, bounded, `cache_ttl`) under the protocol, the login name and
//! the SHA-256 of the password — never the password itself. A server the service names must be
//! a declared `[[backend]]` (host and port as in its `address`) this router may use; anything
//! else refuses the login and is logged.

use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::auth_http::{
    encode_request, head_end, parse_response, AuthAnswer, AuthRequest, HttpUrl, MAX_RESPONSE_HEAD,
};
use super::{Route, RouteError, RouteRequest};
use crate::config::{BackendConfig, Config, RouterConfig};

/// What an `OK` answer is cached under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    protocol: &'static str,
    user: String,
    password_sha256: [u8; 32],
}

/// A declared backend the service may name.
#[derive(Debug, Clone)]
struct Allowed {
    name: String,
    host: String,
    port: u16,
}

/// An `auth_http` client for one router.
#[derive(Debug)]
pub struct HttpRouter {
    name: String,
    url: HttpUrl,
    timeout: Duration,
    headers: std::collections::BTreeMap<String, String>,
    allowed: Vec<Allowed>,
    cache: Option<moka::future::Cache<CacheKey, Route>>,
}

impl HttpRouter {
    /// Builds the client for `router` (validated as part of `config`).
    pub fn new(config: &Config, router: &RouterConfig) -> Result<HttpRouter, super::RoutingError> {
        let url = router.url.as_deref().unwrap_or_default();
        let url = HttpUrl::parse(url).map_err(|e| super::RoutingError::Rule {
            router: router.name.clone(),
            reason: e.to_string(),
        })?;
        let allowed = config
            .router_backends(router)
            .into_iter()
            .filter_map(|name| config.backend(name))
            .filter_map(allowed)
            .collect();
        let cache = (!router.cache_ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .max_capacity(router.cache_size)
                .time_to_live(router.cache_ttl)
                .build()
        });
        Ok(HttpRouter {
            name: router.name.clone(),
            url,
            timeout: router.timeout,
            headers: router.headers.clone(),
            allowed,
            cache,
        })
    }

    /// Asks the service (or the cache) where `request` goes.
    pub async fn route(&self, request: &RouteRequest<'_>) -> Result<Route, RouteError> {
        let key = CacheKey {
            protocol: request.protocol.as_str(),
            user: request.user.to_string(),
            password_sha256: Sha256::digest(request.password.as_bytes()).into(),
        };
        if let Some(cache) = &self.cache {
            if let Some(mut route) = cache.get(&key).await {
                route.cached = true;
                return Ok(route);
            }
        }
        let unavailable = |reason: String| RouteError::Unavailable {
            router: self.name.clone(),
            reason,
        };
        let auth = AuthRequest {
            protocol: request.protocol.as_str(),
            user: request.user,
            password: request.password,
            attempt: request.attempt,
            client_ip: request.client,
            client_tls: request.client_tls,
        };
        let bytes = encode_request(&self.url, &auth, &self.headers);
        let head = tokio::time::timeout(self.timeout, self.exchange(&bytes))
            .await
            .map_err(|_| unavailable(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| unavailable(e.to_string()))?;
        let answer = parse_response(&head).map_err(|e| unavailable(e.to_string()))?;
        match answer {
            AuthAnswer::Failed {
                message,
                wait,
                code,
            } => Err(RouteError::Rejected {
                message,
                wait: wait.unwrap_or(Duration::ZERO),
                code,
            }),
            AuthAnswer::Ok {
                server,
                port,
                user,
                password,
            } => {
                let Some(backend) = self.declared(&server, port) else {
                    return Err(RouteError::Undeclared {
                        router: self.name.clone(),
                        server,
                        port,
                    });
                };
                let route = Route {
                    backend: backend.name.clone(),
                    user,
                    password,
                    cached: false,
                };
                if let Some(cache) = &self.cache {
                    cache.insert(key, route.clone()).await;
                }
                Ok(route)
            }
        }
    }

    /// One HTTP/1.0 exchange: the request, then the response head (the service closes).
    async fn exchange(&self, request: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut tcp = TcpStream::connect((self.url.host.as_str(), self.url.port)).await?;
        tcp.write_all(request).await?;
        tcp.flush().await?;
        let mut head = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let n = tcp.read(&mut buffer).await?;
            if n == 0 {
                return Ok(head);
            }
            head.extend_from_slice(&buffer[..n]);
            if let Some(end) = head_end(&head) {
                head.truncate(end);
                return Ok(head);
            }
            if head.len() > MAX_RESPONSE_HEAD {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("response head longer than {MAX_RESPONSE_HEAD} octets"),
                ));
            }
        }
    }

    /// The declared backend at `server:port` this router may use.
    fn declared(&self, server: &str, port: u16) -> Option<&Allowed> {
        let server = server.trim_start_matches('[').trim_end_matches(']');
        self.allowed
            .iter()
            .find(|a| a.port == port && a.host.eq_ignore_ascii_case(server))
    }
}

/// A backend's host and port, when its address has a numeric port.
fn allowed(backend: &BackendConfig) -> Option<Allowed> {
    let port = backend.address.rsplit_once(':')?.1.parse().ok()?;
    Some(Allowed {
        name: backend.name.clone(),
        host: backend.host().to_string(),
        port,
    })
}
