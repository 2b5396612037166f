//! The session side of a routed login, shared by IMAP and POP3: once the client's login
//! command is complete, [`connect_for_login`] asks the listener's router where it goes,
//! connects that backend (TLS, greeting, forwarded client address as configured) and gives
//! back the connection with the credentials to log in with (the login name possibly rewritten
//! by a rule, or replaced by the auth service's `Auth-User`/`Auth-Pass`).
//!
//! A failure is a [`Refusal`] the protocol turns into its own answer: a failed login
//! (`NO [AUTHENTICATIONFAILED]` / `-ERR [AUTH]`, after the service's `Auth-Wait`, counted
//! towards the auth-failure penalty) or a temporary one (`NO [UNAVAILABLE]` /
//! `-ERR [SYS/TEMP]`). Per-backend login and session counts are kept here for every listener.

use std::time::Duration;

use super::{RouteError, RouteRequest, Upstream};
use crate::backend::{BackendConn, Dialect};
use crate::context::SessionContext;
use crate::metrics::{metrics, LoginOutcome};
use crate::sasl::Credentials;

/// A login that could not be routed or connected, as the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The login failed (unknown user, wrong password): the text for the client.
    AuthFailed(String),
    /// Routing or the backend is unavailable for now: the text for the client.
    Unavailable(String),
}

/// A routed login with its backend connection.
#[derive(Debug)]
pub struct Routed {
    /// The connected backend.
    pub conn: BackendConn,
    /// The credentials for the backend login.
    pub credentials: Credentials,
    /// The `[[backend]]` name (logged as `route`, the `backend` metric label).
    pub backend: String,
}

/// Routes `credentials` on a router listener and connects the chosen backend. `attempt`
/// counts this session's logins (`Auth-Login-Attempt`), `client_tls` whether the client
/// connection is TLS.
pub async fn connect_for_login<D: Dialect>(
    context: &SessionContext,
    credentials: &Credentials,
    attempt: u32,
    client_tls: bool,
) -> Result<Routed, Refusal> {
    let Upstream::Router { router, targets } = &context.listener.upstream else {
        return Err(Refusal::Unavailable("mail server unavailable".into()));
    };
    let request = RouteRequest {
        protocol: context.listener.protocol(),
        user: &credentials.user,
        password: &credentials.password,
        attempt,
        client: context.peer.ip(),
        client_tls,
    };
    let route = match router.route(&request).await {
        Ok(route) => route,
        Err(error) => return Err(refuse(context, &error).await),
    };
    let Some(target) = targets.get(&route.backend) else {
        tracing::error!(router = router.name(), backend = %route.backend, side = "router", "route names an unknown backend");
        return Err(Refusal::Unavailable("mail server unavailable".into()));
    };
    tracing::info!(
        router = router.name(),
        route = %route.backend,
        cached = route.cached,
        rewritten = route.user.is_some(),
        "login routed"
    );
    let conn = target
        .connect_for::<D>(Some((context.peer, context.local)))
        .await
        .map_err(|error| {
            tracing::warn!(%error, route = %route.backend, side = "backend", "backend connection failed");
            Refusal::Unavailable(error.client_reason().into())
        })?;
    let credentials = Credentials {
        authzid: credentials.authzid.clone(),
        user: route.user.unwrap_or_else(|| credentials.user.clone()),
        password: route
            .password
            .unwrap_or_else(|| credentials.password.clone()),
    };
    Ok(Routed {
        conn,
        credentials,
        backend: route.backend,
    })
}

/// Logs a routing failure, waits the service's `Auth-Wait` and counts a failed login (auth
/// penalty included) or a refused one.
async fn refuse(context: &SessionContext, error: &RouteError) -> Refusal {
    match error {
        RouteError::NoRoute | RouteError::Rejected { .. } => {
            tracing::info!(%error, side = "client", "login refused by the router");
        }
        RouteError::Unavailable { .. } | RouteError::Undeclared { .. } => {
            tracing::warn!(%error, side = "router", "login could not be routed");
        }
    }
    match error {
        RouteError::Rejected { wait, .. } if !wait.is_zero() => {
            tokio::time::sleep(*wait.min(&Duration::from_secs(60))).await;
        }
        _ => {}
    }
    if error.is_login_failure() {
        crate::session::record_auth(context, false);
        let text = match error {
            RouteError::Rejected { message, .. } if !message.is_empty() => message.clone(),
            _ => "Authentication failed".to_string(),
        };
        Refusal::AuthFailed(text)
    } else {
        crate::session::count_login(context, LoginOutcome::Refused);
        Refusal::Unavailable("authentication service unavailable".into())
    }
}

/// Counts a login the proxy performed on `backend` (`backend_logins_total`) and, when it
/// worked, a session on it (`backend_sessions_total`).
pub fn count_backend_login(backend: &str, ok: bool) {
    let outcome = if ok {
        LoginOutcome::Ok
    } else {
        LoginOutcome::Fail
    };
    let m = metrics();
    m.backend_logins
        .with_label_values(&[backend, outcome.as_str()])
        .inc();
    if ok {
        m.backend_sessions.with_label_values(&[backend]).inc();
    }
}
