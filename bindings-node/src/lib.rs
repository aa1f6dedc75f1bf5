//! Node.js N-API addon of the workspace daemon. The napi-rs surface comes with the Node issue; until
//! then this crate only proves the binding builds against core and exposes the library version.

/// The version of the daemon library this addon wraps.
pub fn version() -> &'static str {
    wsd_core::version()
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_is_the_workspace_version() {
        assert_eq!(super::version(), env!("CARGO_PKG_VERSION"));
    }
}
