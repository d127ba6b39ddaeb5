//! The control record of one resource and the instances' reports, and their DynamoDB item form.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;

use super::store::StoreError;

/// The control record of one resource: which region takes writes, under which epoch, who holds
/// the lease and until when, and what every instance reported.
///
/// Times are milliseconds since the Unix epoch by the [store's clock](super::LeaseStore::now_ms).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlRecord {
    /// The region every instance writes to.
    pub active: String,
    /// Grows by one (at least) with every change of `active`; never goes back.
    pub epoch: u64,
    /// The instance holding the lease (the one that decides).
    pub holder: String,
    /// When the lease ends unless renewed; after it, any instance may take it over.
    pub lease_expiry_ms: u64,
    /// Why `active` was chosen.
    pub reason: String,
    /// When `active` was chosen.
    pub decided_at_ms: u64,
    /// Grows by one with every write of the decision fields: the condition of the next write.
    pub version: u64,
    /// Each instance's last report, by instance id (written beside the decision: a report
    /// never conflicts with the holder's writes).
    pub reports: BTreeMap<String, Report>,
}

/// What one instance reported: the regions it cannot reach, and when.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Regions this instance's health tracker holds unavailable.
    pub unreachable: Vec<String>,
    /// When it reported.
    pub at_ms: u64,
}

/// The partition key attribute of the control table.
pub(super) const PK: &str = "pk";

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

impl Report {
    pub(super) fn to_attr(&self) -> AttributeValue {
        AttributeValue::M(HashMap::from([
            (
                "unreachable".to_owned(),
                AttributeValue::L(self.unreachable.iter().map(|r| s(r)).collect()),
            ),
            ("at_ms".to_owned(), n(self.at_ms)),
        ]))
    }

    fn from_attr(instance: &str, v: &AttributeValue) -> Result<Self, StoreError> {
        let bad = |what: &str| StoreError::unparsable(format!("report of {instance}: {what}"));
        let m = v.as_m().map_err(|_| bad("not a map"))?;
        let unreachable = match m.get("unreachable") {
            Some(AttributeValue::L(l)) => l
                .iter()
                .map(|r| {
                    r.as_s()
                        .cloned()
                        .map_err(|_| bad("a region is not a string"))
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(bad("`unreachable` is not a list")),
        };
        Ok(Report {
            unreachable,
            at_ms: number(m, "at_ms").map_err(|e| bad(&e))?,
        })
    }
}

fn number(m: &HashMap<String, AttributeValue>, name: &str) -> Result<u64, String> {
    match m.get(name) {
        Some(AttributeValue::N(v)) => v.parse().map_err(|_| format!("`{name}` is not a u64")),
        Some(_) => Err(format!("`{name}` is not a number")),
        None => Err(format!("`{name}` is missing")),
    }
}

fn string(m: &HashMap<String, AttributeValue>, name: &str) -> Result<String, String> {
    match m.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        Some(_) => Err(format!("`{name}` is not a string")),
        None => Err(format!("`{name}` is missing")),
    }
}

impl ControlRecord {
    /// The decision fields (everything but the key and the reports), as update values.
    pub(super) fn decision_attrs(&self) -> [(&'static str, AttributeValue); 7] {
        [
            ("active", s(&self.active)),
            ("epoch", n(self.epoch)),
            ("holder", s(&self.holder)),
            ("lease_expiry_ms", n(self.lease_expiry_ms)),
            ("reason", s(&self.reason)),
            ("decided_at_ms", n(self.decided_at_ms)),
            ("version", n(self.version)),
        ]
    }

    /// The whole item of `resource` (for its first write).
    pub(super) fn to_item(&self, resource: &str) -> HashMap<String, AttributeValue> {
        let mut item: HashMap<String, AttributeValue> = self
            .decision_attrs()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        item.insert(PK.to_owned(), s(resource));
        let reports = self
            .reports
            .iter()
            .map(|(i, r)| (i.clone(), r.to_attr()))
            .collect();
        item.insert("reports".to_owned(), AttributeValue::M(reports));
        item
    }

    /// Parses a stored item.
    ///
    /// # Errors
    ///
    /// [`StoreError`] (unparsable) naming the first attribute missing or of the wrong type.
    pub(super) fn from_item(item: &HashMap<String, AttributeValue>) -> Result<Self, StoreError> {
        let field = |e: String| StoreError::unparsable(format!("control record: {e}"));
        let reports = match item.get("reports") {
            None => BTreeMap::new(),
            Some(AttributeValue::M(m)) => m
                .iter()
                .map(|(i, v)| Ok((i.clone(), Report::from_attr(i, v)?)))
                .collect::<Result<_, StoreError>>()?,
            Some(_) => return Err(field("`reports` is not a map".into())),
        };
        Ok(ControlRecord {
            active: string(item, "active").map_err(field)?,
            epoch: number(item, "epoch").map_err(field)?,
            holder: string(item, "holder").map_err(field)?,
            lease_expiry_ms: number(item, "lease_expiry_ms").map_err(field)?,
            reason: string(item, "reason").unwrap_or_default(),
            decided_at_ms: number(item, "decided_at_ms").unwrap_or_default(),
            version: number(item, "version").map_err(field)?,
            reports,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_round_trips_and_bad_fields_are_named() {
        let rec = ControlRecord {
            active: "eu-west-1".into(),
            epoch: 7,
            holder: "i-3".into(),
            lease_expiry_ms: 1_700_000_002_000,
            reason: "us-east-1 unreachable by 10 of 20 instances".into(),
            decided_at_ms: 1_700_000_000_000,
            version: 41,
            reports: BTreeMap::from([(
                "i-1".to_owned(),
                Report {
                    unreachable: vec!["us-east-1".into()],
                    at_ms: 1_700_000_000_500,
                },
            )]),
        };
        let item = rec.to_item("orders");
        assert_eq!(item[PK], s("orders"));
        assert_eq!(ControlRecord::from_item(&item).unwrap(), rec);

        let mut bad = item.clone();
        bad.insert("epoch".into(), s("seven"));
        let e = ControlRecord::from_item(&bad).unwrap_err();
        assert!(e.is_unparsable());
        assert_eq!(
            e.to_string(),
            "authority record does not parse: control record: `epoch` is not a number"
        );
        let mut bad = item;
        bad.remove("active");
        let e = ControlRecord::from_item(&bad).unwrap_err();
        assert_eq!(e.reason(), "control record: `active` is missing");
    }
}
