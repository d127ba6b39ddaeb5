//! The canary probe the health tracker runs against each region.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::TableStatus;
use tokio::time::Instant;

use super::classify::{FailureKind, failure_kind};
use super::config::{Canary, RegionName};
use crate::health::{Probe, ProbeResult};

/// Probes a region with its [`Canary`] request: up when DynamoDB answers it.
pub(crate) struct CanaryProbe {
    regions: Arc<Vec<(RegionName, Client, Arc<str>)>>,
    canary: Arc<Canary>,
}

impl fmt::Debug for CanaryProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CanaryProbe")
            .field(
                "regions",
                &self.regions.iter().map(|r| &r.0).collect::<Vec<_>>(),
            )
            .field("canary", &self.canary)
            .finish()
    }
}

impl CanaryProbe {
    pub(crate) fn new(regions: Vec<(RegionName, Client, Arc<str>)>, canary: Canary) -> Self {
        CanaryProbe {
            regions: Arc::new(regions),
            canary: Arc::new(canary),
        }
    }
}

impl Probe<RegionName> for CanaryProbe {
    fn probe(&self, id: &RegionName) -> impl Future<Output = ProbeResult> + Send {
        let target = self
            .regions
            .iter()
            .find(|(r, _, _)| r == id)
            .map(|(r, c, t)| (r.clone(), c.clone(), Arc::clone(t)));
        let canary = Arc::clone(&self.canary);
        async move {
            let Some((region, client, table)) = target else {
                return ProbeResult::down();
            };
            let start = Instant::now();
            let outcome = match &*canary {
                Canary::GetItem(key) => client
                    .get_item()
                    .table_name(&*table)
                    .set_key(Some(key.clone()))
                    .send()
                    .await
                    .map(|_| true)
                    .map_err(|e| (failure_kind(&e), e.to_string())),
                _ => client
                    .describe_table()
                    .table_name(&*table)
                    .send()
                    .await
                    .map(|out| {
                        matches!(
                            out.table().and_then(|t| t.table_status()),
                            None | Some(TableStatus::Active | TableStatus::Updating)
                        )
                    })
                    .map_err(|e| (failure_kind(&e), e.to_string())),
            };
            match outcome {
                Ok(true) => ProbeResult::up().with_latency(start.elapsed()),
                Ok(false) => {
                    tracing::debug!(
                        target: "switchover::dynamo",
                        region = %region,
                        table = %table,
                        "canary: table is not active"
                    );
                    ProbeResult::down()
                }
                // The service answered, and only the caller's request was wrong (a key that
                // does not match the schema): the region works.
                Err((FailureKind::Rejected | FailureKind::Throttled, _)) => {
                    ProbeResult::up().with_latency(start.elapsed())
                }
                Err((FailureKind::TableNotFound, _)) => {
                    tracing::error!(
                        target: "switchover::dynamo",
                        region = %region,
                        table = %table,
                        "canary: table does not exist in this region (configuration error); \
                         the region is kept out of rotation"
                    );
                    ProbeResult::down()
                }
                Err((kind, message)) => {
                    tracing::debug!(
                        target: "switchover::dynamo",
                        region = %region,
                        table = %table,
                        kind = %kind,
                        error = %message,
                        "canary failed"
                    );
                    ProbeResult::down()
                }
            }
        }
    }
}
