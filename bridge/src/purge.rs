//! `POST /v1/purge/tenants/{tenant}`: an offboarded tenant's messages, removed
//! from every stream.
//!
//! Why here: only the bridge speaks NATS, so when a tenant is offboarded the
//! component that does it asks the bridge to forget what JetStream still
//! keeps of it: its inbound messages and replies not yet expired (ingress,
//! egress, in every env, delivered or not) and its dead letters.
//!
//! How: one JetStream purge per stream, filtered to the tenant's subjects
//! ([`streams::tenant_filter`]). Wherever a stream stores a tenant's message,
//! the tenant is a token of the stored subject (the partition token of the
//! messaging streams comes after it; a dead letter is stored under its
//! original subject as published), so a filter selects exactly that tenant
//! and never another (`acme` is not `acme2`). Purges are idempotent: a second
//! call removes nothing and answers `{"purged": 0}`.
//!
//! What the bridge has already fetched (waiting in its lanes, held by a rate,
//! in flight, waiting for a retry) is not in the stream any more but may
//! still be delivered once; the components drop deliveries of a tenant being
//! offboarded. Such a message is never dead-lettered after the purge (the
//! delivery checks that the original is still stored first,
//! [`crate::deliver`]), so a purge is not undone by a late dead letter.
//!
//! Checks in the publish API's order: the id in the path (400, whatever the
//! token), then the publish token (401), then NATS (503).

use std::sync::Arc;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::stream::PurgeErrorKind;
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::AppState;
use crate::problem::Problem;
use crate::streams;
use crate::subject;

/// The answer: how many messages the purge removed, over every stream.
#[derive(Debug, Serialize)]
pub struct Purged {
    pub purged: u64,
}

pub async fn purge_tenant(
    State(app): State<Arc<AppState>>,
    tenant: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    // A path that does not decode (bad percent-encoding) is a bad id too.
    let Ok(Path(tenant)) = tenant else {
        return Problem::bad_request("the tenant in the path does not decode").into_response();
    };
    match handle(&app, &tenant, &headers).await {
        Ok(purged) => Json(purged).into_response(),
        Err(problem) => problem.into_response(),
    }
}

async fn handle(app: &AppState, tenant: &str, headers: &HeaderMap) -> Result<Purged, Problem> {
    // 1. Syntax of the id (400), whatever the token: the filters are built
    //    from it, so nothing else (`.`, `*`, `>`) may reach them.
    if !subject::is_id(tenant) {
        return Err(Problem::bad_request(
            "the tenant must be an id (^[a-z0-9][a-z0-9_-]{0,62}$)",
        ));
    }
    // 2. Authentication (401): the components' token, as for publishing.
    crate::http::check_publish_token(app, headers)?;
    // 3. NATS must be there.
    let nats = &app.nats;
    if !nats.ready() {
        tracing::warn!(tenant, "purge refused: nats unavailable");
        return Err(Problem::unavailable("NATS is unavailable; retry later"));
    }

    let mut total = 0;
    for (stream, _) in streams::STREAMS {
        let filter = streams::tenant_filter(stream, tenant)
            .expect("every stream of STREAMS has a tenant filter");
        let purged = match nats
            .js()
            .get_stream_no_info(stream)
            .await
            .map_err(async_nats::Error::from)
        {
            Ok(handle) => handle.purge().filter(filter.as_str()).await,
            Err(e) => {
                tracing::warn!(tenant, stream, error = %e, "purge failed");
                return Err(Problem::unavailable("NATS is unavailable; retry later"));
            }
        };
        let purged = match purged {
            Ok(response) => response.purged,
            // A stream NATS lost (it came back without its store) holds
            // nothing of the tenant; it is created again.
            Err(e)
                if matches!(e.kind(), PurgeErrorKind::JetStream(ref j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
            {
                nats.ensure_streams_again();
                0
            }
            Err(e) => {
                // What was purged before stays purged; the caller's retry
                // purges the rest.
                tracing::warn!(tenant, stream, filter, error = %e, "purge failed");
                return Err(Problem::unavailable(
                    "the purge did not complete; retry later",
                ));
            }
        };
        app.metrics.purged(stream, purged);
        total += purged;
        tracing::info!(tenant, stream, filter, purged, "tenant purged from stream");
    }
    Ok(Purged { purged: total })
}
