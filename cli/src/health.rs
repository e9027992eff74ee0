//! `airt health`: Health/Check of each service.

use std::process::ExitCode;

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::client::{ConnectionArgs, ServiceName};

pub async fn run(args: &ConnectionArgs) -> anyhow::Result<ExitCode> {
    let mut all_serving = true;
    for (name, service) in [
        ("registry-service", ServiceName::Registry),
        ("policy-service", ServiceName::Policy),
        ("workflow-service", ServiceName::Workflow),
    ] {
        let mut client = HealthClient::new(args.channel(service)?);
        let status = match client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
        {
            Ok(response) => ServingStatus::try_from(response.into_inner().status)
                .unwrap_or(ServingStatus::Unknown)
                .as_str_name()
                .to_owned(),
            Err(status) => format!("UNREACHABLE ({})", status.message()),
        };
        all_serving &= status == "SERVING";
        out!("{name:<18} {:<28} {status}", args.address(service));
    }
    Ok(if all_serving {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
