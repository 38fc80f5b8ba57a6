//! Outflow's domain: the nouns and their rules, with no I/O. The store
//! persists these types; the API maps them to and from Klaviyo's JSON:API
//! shapes.

pub mod clock;
pub mod event;
pub mod flow;
pub mod profile;
pub mod segment;

pub use clock::{Clock, ManualClock, SystemClock};
