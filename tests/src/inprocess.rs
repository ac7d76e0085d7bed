//! The one way to start a service inside the test process: [`start`] builds any of the four
//! services (or the registry) from its typed config and runs it on a task; [`Running`] is its
//! address and its stop. The helpers below give each service the config a test's slice of the
//! stack needs ([`command_api`], [`projectors`], [`query_api`], [`signer`]), with a closure to
//! adjust it. Services that a test kills with SIGKILL run as processes instead: see
//! [`crate::e2e::Service`].

use std::{net::SocketAddr, path::Path, time::Duration};

use clap::Parser;
use futures::future::BoxFuture;

use crate::{TempFile, TestAuth, TestStack, fixtures, signer};

/// What every service's `Application` offers: built from a config and a shutdown token, then
/// run until the token is cancelled.
pub trait Service: Sized + Send + 'static {
    type Config;
    fn build(config: &Self::Config, shutdown: platform::Shutdown) -> BoxFuture<'_, anyhow::Result<Self>>;
    fn local_addr(&self) -> SocketAddr;
    fn run(self) -> BoxFuture<'static, anyhow::Result<()>>;
}

macro_rules! service {
    ($application:ty, $config:ty) => {
        impl Service for $application {
            type Config = $config;
            fn build(config: &Self::Config, shutdown: platform::Shutdown) -> BoxFuture<'_, anyhow::Result<Self>> {
                Box::pin(<$application>::build(config, shutdown))
            }
            fn local_addr(&self) -> SocketAddr {
                <$application>::local_addr(self)
            }
            fn run(self) -> BoxFuture<'static, anyhow::Result<()>> {
                Box::pin(self.run_until_stopped())
            }
        }
    };
}

service!(command_api::Application, command_api::Config);
service!(signer_worker::Application, signer_worker::Config);
service!(projectors::Application, projectors::Config);
service!(query_api::Application, query_api::Config);
service!(schema_registry::Registry, schema_registry::RegistryConfig);

/// A service running on a task of the test: cancelled when dropped.
pub struct Running {
    pub address: SocketAddr,
    /// `http://<address>`.
    pub url: String,
    shutdown: platform::Shutdown,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// Cancels the service and asserts it stops cleanly within 30 s.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let task = self.task.take().expect("not yet stopped");
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the service stops within 30 s")
            .expect("its task did not panic")
            .expect("it stops without an error");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Builds `S` from `config` and runs it; panics if it does not build.
pub async fn start<S: Service>(config: &S::Config) -> Running {
    let shutdown = platform::Shutdown::new();
    let service = S::build(config, shutdown.clone())
        .await
        .unwrap_or_else(|e| panic!("{} builds: {e:#}", std::any::type_name::<S>()));
    let address = service.local_addr();
    Running {
        address,
        url: format!("http://{address}"),
        shutdown,
        task: Some(tokio::spawn(service.run())),
    }
}

/// A command API on a test's slice: event topics created, schemas registered, DIVOC's master
/// list plus the sample's "CoVax", tokens of its own, Kolkata's time zone.
pub struct CommandApi {
    pub running: Running,
    /// Base URL (`http://127.0.0.1:<port>`).
    pub url: String,
    /// Signs tokens the API trusts.
    pub auth: TestAuth,
    _list: TempFile,
}

/// Starts a [`CommandApi`], letting the test adjust its config first.
pub async fn command_api(stack: &TestStack, adjust: impl FnOnce(&mut command_api::Config)) -> CommandApi {
    stack.create_event_topics().await;
    avro::client::RegistryClient::new(&stack.kafka.schema_registry_url)
        .register_event_schemas(&stack.kafka.topic_prefix)
        .await
        .expect("registering the test's schemas");
    let list = TempFile::with(&fixtures::master_list_with_covax());
    let auth = TestAuth::new();
    let mut config = command_api::Config::parse_from(["command-api"]);
    config.kafka = stack.kafka.clone();
    config.redis = stack.redis.clone();
    config.postgres = stack.postgres.clone();
    config.keystore = stack.keystore.clone();
    config.listen = "127.0.0.1:0".parse().expect("a valid address");
    config.vaccine_list = Some(list.0.clone());
    config.auth.jwks = Some(auth.jwks.path());
    config.zone = chrono_tz::Asia::Kolkata;
    adjust(&mut config);
    let running = start::<command_api::Application>(&config).await;
    CommandApi {
        url: running.url.clone(),
        running,
        auth,
        _list: list,
    }
}

/// The projectors on the test's topics and stores: every projection, batches of 50.
pub async fn projectors(stack: &TestStack, adjust: impl FnOnce(&mut projectors::Config)) -> Running {
    let mut config = projectors::Config::parse_from(["projectors"]);
    config.kafka = stack.kafka.clone();
    config.postgres = stack.postgres.clone();
    config.redis = stack.redis.clone();
    config.clickhouse = stack.clickhouse.clone();
    config.keystore = stack.keystore.clone();
    config.listen = "127.0.0.1:0".parse().expect("an address");
    config.batch_size = 50;
    adjust(&mut config);
    start::<projectors::Application>(&config).await
}

/// The query API on the test's stores, trusting the public halves of `keys` (a
/// [`signer::Issuer`]'s directory, published beside it as `vaxctl keys publish` would) under the
/// tests' DID, and `auth`'s tokens.
pub async fn query_api(
    stack: &TestStack,
    keys: &Path,
    auth: &TestAuth,
    adjust: impl FnOnce(&mut query_api::Config),
) -> Running {
    let public = signer::publish(keys);
    let public = public.display().to_string();
    let mut config = query_api::Config::parse_from(["query-api", "--issuer-public-keys", public.as_str()]);
    config.kafka = stack.kafka.clone();
    config.postgres = stack.postgres.clone();
    config.redis = stack.redis.clone();
    config.clickhouse = stack.clickhouse.clone();
    config.listen = "127.0.0.1:0".parse().expect("an address");
    config.issuer.did = signer::DID.to_owned();
    config.issuer.public_base_url = "https://certificates.test".to_owned();
    config.auth.jwks = Some(auth.jwks.path());
    adjust(&mut config);
    start::<query_api::Application>(&config).await
}

/// The signer on the test's topics, signing with `keys` (a [`signer::Issuer`]'s directory).
/// Tests that kill the signer run it as a process: [`signer::spawn`].
pub async fn signer(stack: &TestStack, keys: &Path, adjust: impl FnOnce(&mut signer_worker::Config)) -> Running {
    let keys = keys.display().to_string();
    let mut config = signer_worker::Config::parse_from(["signer-worker", "--issuer-keys", keys.as_str()]);
    config.kafka = stack.kafka.clone();
    config.keystore = stack.keystore.clone();
    config.listen = "127.0.0.1:0".parse().expect("an address");
    adjust(&mut config);
    start::<signer_worker::Application>(&config).await
}

/// The schema registry on its own schema topic under the test's prefix (`<prefix>_schemas`).
pub async fn registry(stack: &TestStack) -> Running {
    let mut config = schema_registry::RegistryConfig::parse_from(["vaxtrail-registry"]);
    config.brokers = stack.kafka.brokers.clone();
    config.topic = stack.topic("_schemas");
    config.listen = "127.0.0.1:0".parse().expect("an address");
    start::<schema_registry::Registry>(&config).await
}
