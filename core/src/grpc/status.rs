//! The one place where core errors become gRPC statuses (for the server binary and the workspace
//! sockets alike).

use crate::error::Error;

pub fn to_status(e: Error) -> tonic::Status {
    let code = tonic::Code::from_i32(e.code().as_i32());
    let mut status = tonic::Status::new(code, e.to_string());
    if let Ok(reason) = e.reason().parse() {
        status.metadata_mut().insert("wsd-error-reason", reason);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_code_is_the_same_grpc_code() {
        for code in crate::Code::ALL {
            let grpc = tonic::Code::from_i32(code.as_i32());
            // tonic's Debug is the CamelCase of the canonical name (DataLoss for DATA_LOSS).
            let camel: String = code
                .name()
                .split('_')
                .map(|w| w[..1].to_string() + &w[1..].to_lowercase())
                .collect();
            assert_eq!(format!("{grpc:?}"), camel, "{code:?}");
        }
    }

    #[test]
    fn codes_and_messages_carry_over() {
        let s = to_status(Error::WorkspaceExists("ws1".into()));
        assert_eq!(s.code(), tonic::Code::AlreadyExists);
        assert!(s.message().contains("ws1"));
        assert_eq!(
            s.metadata()
                .get("wsd-error-reason")
                .and_then(|v| v.to_str().ok()),
            Some("workspace_exists")
        );
        let s = to_status(Error::UploadFailed {
            what: "x".into(),
            reason: "y".into(),
        });
        assert_eq!(s.code(), tonic::Code::DataLoss);
    }
}
