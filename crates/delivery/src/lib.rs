//! Webhook delivery (issue #7): the outbox rows a run's step writes are
//! leased by [`worker::Deliverer`], sent with one pooled client through the
//! SSRF [`guard`], signed per Standard Webhooks ([`signing`]), retried per
//! [`policy`], isolated per host ([`breaker`], per-host slots), and every
//! attempt is logged. The pure parts (signing, policy, breaker, guard) do no
//! I/O and take time as an argument.

pub mod breaker;
pub mod client;
pub mod guard;
pub mod metrics;
pub mod policy;
pub mod signing;
pub mod worker;

pub use worker::{Deliverer, DeliveryConfig, DeliveryTasks, Passed};

use outflow_store::StoreError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("http client: {0}")]
    Http(String),
}
