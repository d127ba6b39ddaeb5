//! Where the control record lives: the [`LeaseStore`] trait, and [`DynamoLeaseStore`], a
//! DynamoDB table written with conditional writes only.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;

use super::record::{ControlRecord, PK, Report};
use crate::route::AuthorityError;

/// Why a store operation failed: the control store is the fleet's authority, so its errors
/// are the authority's ([`AuthorityError::unreachable`] when it cannot be reached or refuses
/// the request, [`AuthorityError::unparsable`] when the stored record does not parse).
pub type StoreError = AuthorityError;

/// A strongly consistent store of control records with compare-and-set writes: a DynamoDB
/// table ([`DynamoLeaseStore`]), a Postgres row, or a fake in tests.
pub trait LeaseStore: Send + Sync + 'static {
    /// The record of `resource` as last written (`None`: none yet). Must be strongly
    /// consistent: a write that returned `Ok(true)` is seen by every later load.
    fn load(
        &self,
        resource: &str,
    ) -> impl Future<Output = Result<Option<ControlRecord>, StoreError>> + Send;

    /// Writes the decision fields of `record` if the stored version is `expected` (`None`: no
    /// record is stored yet, and `record` is written whole). `Ok(false)`: another write came
    /// first, nothing was written. Reports are left as stored.
    fn write(
        &self,
        resource: &str,
        record: &ControlRecord,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Writes `instance`'s report into the record of `resource` without touching the decision
    /// (and without conflicting with it). `Ok(false)`: no record is stored yet.
    fn report(
        &self,
        resource: &str,
        instance: &str,
        report: &Report,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The clock leases run by, in milliseconds since the Unix epoch (default: this host's
    /// wall clock; the instances' clocks must agree to well within the lease TTL).
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// [`LeaseStore`] on a DynamoDB table whose partition key is the string attribute `pk`: one
/// item per resource, read with `ConsistentRead`, written only with `PutItem` /
/// `UpdateItem` under a condition (`attribute_not_exists(pk)` for the first record,
/// `version = :expected` after; reports under `attribute_exists(pk)`).
///
/// Use a single-region table (or a multi-region strongly consistent one): an eventually
/// consistent replica of the control record would let two instances both win a lease. The
/// client's timeouts and retries are the user's; the follower bounds each poll by its read
/// timeout.
#[derive(Clone, Debug)]
pub struct DynamoLeaseStore {
    client: Client,
    table: Arc<str>,
}

impl DynamoLeaseStore {
    /// The store on `table`, through `client`.
    pub fn new(client: Client, table: impl Into<Arc<str>>) -> Self {
        DynamoLeaseStore {
            client,
            table: table.into(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }
}

fn sdk_error<E: ProvideErrorMetadata + fmt::Debug>(
    op: &str,
    e: &aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> StoreError {
    let detail = match e.as_service_error() {
        Some(s) => s.code().unwrap_or("service error").to_owned(),
        None => format!("{e}"),
    };
    StoreError::unreachable(format!("{op}: {detail}"))
}

fn is_condition_failed<E: ProvideErrorMetadata>(
    e: &aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> bool {
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

impl LeaseStore for DynamoLeaseStore {
    async fn load(&self, resource: &str) -> Result<Option<ControlRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&*self.table)
            .key(PK, AttributeValue::S(resource.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", &e))?;
        out.item.as_ref().map(ControlRecord::from_item).transpose()
    }

    async fn write(
        &self,
        resource: &str,
        record: &ControlRecord,
        expected: Option<u64>,
    ) -> Result<bool, StoreError> {
        let sent = match expected {
            None => self
                .client
                .put_item()
                .table_name(&*self.table)
                .set_item(Some(record.to_item(resource)))
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| (is_condition_failed(&e), sdk_error("PutItem", &e))),
            Some(version) => {
                let mut update = self
                    .client
                    .update_item()
                    .table_name(&*self.table)
                    .key(PK, AttributeValue::S(resource.to_owned()))
                    .condition_expression("#version = :expected")
                    .expression_attribute_values(
                        ":expected",
                        AttributeValue::N(version.to_string()),
                    );
                let mut sets = Vec::new();
                for (name, value) in record.decision_attrs() {
                    sets.push(format!("#{name} = :{name}"));
                    update = update
                        .expression_attribute_names(format!("#{name}"), name)
                        .expression_attribute_values(format!(":{name}"), value);
                }
                update
                    .update_expression(format!("SET {}", sets.join(", ")))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| (is_condition_failed(&e), sdk_error("UpdateItem", &e)))
            }
        };
        match sent {
            Ok(()) => Ok(true),
            Err((true, _)) => Ok(false),
            Err((false, e)) => Err(e),
        }
    }

    async fn report(
        &self,
        resource: &str,
        instance: &str,
        report: &Report,
    ) -> Result<bool, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&*self.table)
            .key(PK, AttributeValue::S(resource.to_owned()))
            .update_expression("SET #reports.#instance = :report")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#reports", "reports")
            .expression_attribute_names("#instance", instance)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":report", report.to_attr())
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(sdk_error("UpdateItem", &e)),
        }
    }
}
