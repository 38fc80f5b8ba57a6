use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

/// Liveness plus a round trip to the store.
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state
        .store
        .read(|c| Ok(c.query("SELECT 1", &[])?.len()))
        .await
    {
        Ok(_) => (
            StatusCode::OK,
            Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "detail": e.to_string()})),
        ),
    }
}
