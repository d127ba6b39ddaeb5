//! # switchover
//!
//! Client-side resilience for services whose Redis primary, Postgres primary or DynamoDB region
//! goes away: one retry executor, one health tracker, one failover router, and adapters that put
//! them in front of the clients you already use.
//!
//! (crate documentation is completed as the parts land)

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod error;
pub mod health;
pub mod retry;
pub mod route;

#[cfg(feature = "dynamodb")]
#[cfg_attr(docsrs, doc(cfg(feature = "dynamodb")))]
pub mod dynamo;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use error::{ByClassify, Classification, Classifier, Classify, ConfigError, ErrorClass, Execution};
