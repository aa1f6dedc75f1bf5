//! The workspaces a daemon knows: ids, states, their persistence in the working area, and the
//! outcome records of finished work.

pub mod ids;
pub mod outcomes;
pub mod state;
pub mod store;

pub use state::ContentState;
