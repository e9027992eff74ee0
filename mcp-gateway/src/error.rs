//! The gateway's one error type.

use rmcp::ErrorData as McpError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A service refused or failed a call.
    #[error("{}: {}", .0.code(), .0.message())]
    Service(#[from] tonic::Status),
    /// A tool definition that is not valid MCP (a registry spec the
    /// mapping cannot express).
    #[error("tool definition: {0}")]
    Definition(#[from] serde_json::Error),
}

impl From<GatewayError> for McpError {
    fn from(error: GatewayError) -> Self {
        match &error {
            GatewayError::Service(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                ) =>
            {
                McpError::invalid_request(error.to_string(), None)
            }
            _ => McpError::internal_error(error.to_string(), None),
        }
    }
}
