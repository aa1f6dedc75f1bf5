//! The workspace lifecycle: ids, states and their persistence, and the content operations.

mod content;
pub mod ids;
pub mod state;
pub mod store;

pub use state::ContentState;

#[cfg(test)]
mod tests;
