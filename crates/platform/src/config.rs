//! Typed, layered configuration: defaults < `chatmesh.toml` < `CHATMESH_*` env < flags.
//!
//! Nested keys use `__` in the environment: `CHATMESH_GRPC__LISTEN=0.0.0.0:50051` overrides
//! `[grpc] listen`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

/// Everything a chatmesh process can be told.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the embedded stores and generated keys live.
    pub data_dir: PathBuf,
    /// This process's node id in generated ids (0..=1023).
    pub node_id: u16,
    pub grpc: GrpcConfig,
    pub rest: RestConfig,
    pub ws: WsConfig,
    pub dispatcher: DispatcherConfig,
    pub auth: AuthConfig,
    pub password: PasswordConfig,
    pub accounts: AccountsConfig,
    pub feed: FeedConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub peers: PeersConfig,
    pub search: SearchConfig,
    pub metrics: MetricsConfig,
    pub telemetry: TelemetryConfig,
    pub store: StoreConfig,
    pub media: MediaConfig,
    /// Redis, which joins several processes into one mesh (`CHATMESH_REDIS_URL`). Empty: one
    /// process, everything in it.
    pub redis_url: String,
    pub redis: RedisConfig,
}

/// Per-purpose Redis settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// The dispatchers' backplane; empty: `redis_url`.
    pub backplane_url: String,
    /// Who is online, across dispatchers; empty: `redis_url`.
    pub presence_url: String,
    /// Per-user call limits shared by every process; empty: `redis_url`.
    pub limits_url: String,
    /// The change stream feeding the search indexers (`search.source = "stream"`); empty: `redis_url`.
    pub stream_url: String,
    /// A dispatcher's presence claims expire this long after its last heartbeat (a third of it).
    pub presence_ttl_secs: u64,
    /// Longest wait for Redis on a request path, in milliseconds; past it the call fails open.
    pub timeout_ms: u64,
    /// A CA bundle (PEM) that `rediss://` (TLS) servers are checked against, alone; empty: the
    /// public web roots.
    pub tls_ca_file: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            backplane_url: String::new(),
            presence_url: String::new(),
            limits_url: String::new(),
            stream_url: String::new(),
            presence_ttl_secs: 30,
            timeout_ms: 250,
            tls_ca_file: String::new(),
        }
    }
}

impl Config {
    /// The backplane's Redis URL, if the mesh spans processes.
    pub fn backplane_url(&self) -> Option<&str> {
        self.redis_for(&self.redis.backplane_url)
    }

    /// The shared limits' Redis URL, if the mesh spans processes.
    pub fn limits_url(&self) -> Option<&str> {
        self.redis_for(&self.redis.limits_url)
    }

    /// The change stream's Redis URL, if configured.
    pub fn stream_url(&self) -> Option<&str> {
        self.redis_for(&self.redis.stream_url)
    }

    /// Presence's Redis URL, if the mesh spans processes.
    pub fn presence_url(&self) -> Option<&str> {
        self.redis_for(&self.redis.presence_url)
    }

    fn redis_for<'a>(&'a self, specific: &'a str) -> Option<&'a str> {
        let url = if specific.is_empty() { self.redis_url.as_str() } else { specific };
        (!url.is_empty()).then_some(url)
    }
}

/// Attachments: where their bytes live and what is accepted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    pub backend: MediaBackend,
    /// Empty: `<data_dir>/media`.
    pub local_root: String,
    /// The origin clients reach /media at (e.g. `https://media.example-usercontent.com`).
    /// Empty: the address of the listener serving /media.
    pub public_url: String,
    /// A listener of its own for /media (local backend), so that files anyone in a channel may
    /// upload are never served from the origin of the API and the web client; point
    /// `public_url` at it. Empty: /media is served on the REST listener.
    #[serde(with = "empty_is_none")]
    pub listen: Option<SocketAddr>,
    pub s3_bucket: String,
    pub s3_region: String,
    /// Empty: AWS; set it for an S3-compatible store.
    pub s3_endpoint: String,
    /// Allow a plain-HTTP endpoint (local S3-compatible stores only).
    pub s3_allow_http: bool,
    /// A CA bundle (PEM) trusted for the S3 endpoint beside the system's roots (a private
    /// S3-compatible store); empty: the usual roots only.
    pub s3_ca_file: String,
    /// Largest file accepted, in bytes.
    pub max_bytes: u64,
    /// Accepted content types, each one exact lowercase `type/subtype` (no wildcards). Only
    /// types a browser shows without running anything are served inline; the others download.
    pub content_types: Vec<String>,
    /// How long an upload URL works.
    pub upload_url_ttl_secs: u64,
    /// How long a download URL works.
    pub download_url_ttl_secs: u64,
    /// Uploads not attached to a chat within this time are deleted.
    pub abandoned_after_secs: u64,
    /// How often abandoned and released uploads are looked for.
    pub sweep_interval_secs: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            backend: MediaBackend::Local,
            local_root: String::new(),
            public_url: String::new(),
            listen: None,
            s3_bucket: String::new(),
            s3_region: "us-east-1".into(),
            s3_endpoint: String::new(),
            s3_allow_http: false,
            s3_ca_file: String::new(),
            max_bytes: 25 * 1024 * 1024,
            content_types: [
                "image/png",
                "image/jpeg",
                "image/gif",
                "image/webp",
                "image/avif",
                "video/mp4",
                "video/webm",
                "audio/mpeg",
                "audio/mp4",
                "audio/ogg",
                "audio/wav",
                "audio/webm",
                "text/plain",
                "application/pdf",
            ]
            .map(String::from)
            .to_vec(),
            upload_url_ttl_secs: 300,
            download_url_ttl_secs: 300,
            abandoned_after_secs: 24 * 3600,
            sweep_interval_secs: 60,
        }
    }
}

/// Where attachments' bytes live.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum MediaBackend {
    /// Files under `local_root`, served under /media on the REST listener.
    #[default]
    Local,
    /// An S3 bucket (`s3_bucket`), or an S3-compatible store at `s3_endpoint`.
    S3,
}

/// What the search indexer follows.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SearchSource {
    /// The chat store's change feed, in the chat part's process.
    #[default]
    Feed,
    /// A Redis Stream the chat part relays the feed into, read by a consumer group: indexers
    /// in any process, several at once.
    Stream,
}

/// Where the search index lives.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SearchBackend {
    /// tantivy under the data dir.
    #[default]
    Embedded,
    /// An Elasticsearch cluster (`elasticsearch_url`).
    Elasticsearch,
}

/// The search index and its indexer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// Indexed changes become searchable at least this often, in milliseconds.
    pub commit_interval_ms: u64,
    /// ...or as soon as this many changes wait.
    pub commit_batch: usize,
    /// Memory the index writer may buffer, in MiB (at least 15).
    pub writer_memory_mib: usize,
    /// What the indexer follows.
    pub source: SearchSource,
    /// Where the index lives.
    pub backend: SearchBackend,
    pub elasticsearch_url: String,
    pub elasticsearch_index: String,
    pub elasticsearch_username: String,
    pub elasticsearch_password: String,
    /// A CA bundle (PEM) trusted for an `https://` Elasticsearch beside the web roots (a
    /// private CA); empty: the web roots only.
    pub elasticsearch_ca_file: String,
    /// This indexer's name in the consumer group; empty: `$HOSTNAME` (the pod name), else
    /// `indexer-<pid>`.
    pub consumer: String,
    /// Changes a consumer has held unacknowledged this long are taken over by another (the
    /// holder is presumed dead), in milliseconds.
    pub claim_idle_ms: u64,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            commit_interval_ms: 500,
            commit_batch: 10_000,
            writer_memory_mib: 64,
            source: SearchSource::Feed,
            backend: SearchBackend::Embedded,
            elasticsearch_url: String::new(),
            elasticsearch_index: "chatmesh-chats".into(),
            elasticsearch_username: String::new(),
            elasticsearch_password: String::new(),
            elasticsearch_ca_file: String::new(),
            consumer: String::new(),
            claim_idle_ms: 30_000,
        }
    }
}

/// Prometheus metrics, served at `GET /metrics` on their own listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true, listen: ([127, 0, 0, 1], 9464).into() }
    }
}

/// An optional address written as a string, `""` meaning none (TOML has no null).
mod empty_is_none {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(value: &Option<SocketAddr>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(addr) => serializer.collect_str(addr),
            None => serializer.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.trim() {
            "" => Ok(None),
            addr => addr.parse().map(Some).map_err(D::Error::custom),
        }
    }
}

/// Where users, channels and chats are kept.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// fjall keyspaces under the data dir: one process owns them.
    #[default]
    Embedded,
    /// ScyllaDB (`[store.scylla]`): the user, channel and chat parts keep no state of their own
    /// and may run replicated.
    Scylla,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    pub scylla: ScyllaStoreConfig,
}

/// The ScyllaDB cluster of `backend = "scylla"`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScyllaStoreConfig {
    /// `host:port` of a few nodes; the driver discovers the others.
    pub contact_points: Vec<String>,
    pub keyspace: String,
    /// The local datacenter: reads and writes stay there (LOCAL_QUORUM, LOCAL_SERIAL).
    pub datacenter: String,
    /// Empty: no authentication.
    pub username: String,
    pub password: String,
    pub request_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Replicas per datacenter when `chatmesh admin migrate` creates the keyspace.
    pub replication_factor: u32,
    /// Client-to-node encryption (TLS). Nodes are reached by address, so each node's
    /// certificate must name its IP address.
    pub tls: bool,
    /// A CA bundle (PEM) the nodes' certificates are checked against, alone; empty: the public
    /// web roots. Only with `tls`.
    pub tls_ca_file: String,
    /// How long a part waits at start for the keyspace to reach the schema version it needs
    /// (the migrate Job may still be running), in seconds; then it stops with an error.
    pub schema_wait_secs: u64,
}

impl Default for ScyllaStoreConfig {
    fn default() -> Self {
        Self {
            contact_points: vec!["127.0.0.1:9042".into()],
            keyspace: "chatmesh".into(),
            datacenter: "datacenter1".into(),
            username: String::new(),
            password: String::new(),
            request_timeout_ms: 5_000,
            connect_timeout_ms: 5_000,
            replication_factor: 3,
            tls: false,
            tls_ca_file: String::new(),
            // why: under the startupProbe's 5 minutes, so the part says what it lacks before
            // the kubelet restarts it
            schema_wait_secs: 270,
        }
    }
}

/// OpenTelemetry export over OTLP/gRPC: traces and metrics. Off (and free) while
/// `otlp_endpoint` is empty.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The collector, e.g. `http://otel-collector:4317`.
    pub otlp_endpoint: String,
    /// `service.name` of this process's spans and metrics; empty: `chatmesh-<parts>`.
    pub service_name: String,
    /// Share of traces kept (parent-based: a caller's decision is followed).
    pub sample_ratio: f64,
    /// How often metrics are pushed to the collector.
    pub metrics_interval_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            service_name: String::new(),
            sample_ratio: 1.0,
            metrics_interval_ms: 10_000,
        }
    }
}

/// Where the parts that do not run in this process listen (gRPC URLs such as
/// `http://chatmesh-user:50051`; several, comma-separated, are balanced per call and a dead one
/// is left out). Empty: the part must run in this process.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PeersConfig {
    pub user: String,
    pub channel: String,
    pub chat: String,
    pub dispatcher: String,
    pub feed: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    pub listen: SocketAddr,
    /// A second listener for the mesh's own calls, serving every service; when set, `listen`
    /// serves only the public ones (so a network policy can keep the internal port private).
    /// Empty: `listen` serves both.
    #[serde(with = "empty_is_none")]
    pub internal_listen: Option<SocketAddr>,
    /// Largest message accepted or sent, in bytes.
    pub max_message_bytes: usize,
    /// HTTP/2 streams per connection on the public listener.
    pub max_concurrent_streams: u32,
    /// Deadline applied when the caller sets none (or a longer one), in milliseconds.
    pub default_deadline_ms: u64,
    /// HTTP/2 keepalive ping interval, in seconds.
    pub keepalive_secs: u64,
    /// How long a keepalive ping may wait for its answer before the connection is closed, in seconds.
    pub keepalive_timeout_secs: u64,
    /// How long a new connection has to send the HTTP/2 connection preface before it is
    /// closed, in seconds.
    pub handshake_timeout_secs: u64,
    /// Open connections one client address (an IPv6 /64) may hold on the public listener;
    /// more are closed as they arrive. 0: no cap (behind a proxy every client shares its address).
    pub max_connections_per_source: usize,
    /// How long a stop waits for calls in flight before closing connections, in seconds.
    pub drain_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RestConfig {
    pub listen: SocketAddr,
    /// Origins allowed to call the API from a browser (CORS); empty allows none, "*" any.
    pub cors_origins: Vec<String>,
    /// How long a stop waits for requests in flight before closing connections, in seconds.
    pub drain_secs: u64,
    /// How long a request's headers may take to arrive (from the connection's start, or the
    /// end of its previous request) before the connection is closed, in seconds.
    pub header_timeout_secs: u64,
    /// Open connections one client address (an IPv6 /64) may hold; more are closed as they
    /// arrive. 0: no cap (behind a proxy every client shares its address).
    pub max_connections_per_source: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WsConfig {
    pub listen: SocketAddr,
    /// Largest client message (and frame) accepted.
    pub max_message_bytes: usize,
    pub read_buffer_bytes: usize,
    /// Bytes a socket may have waiting to be written before it counts as a slow consumer.
    pub max_write_buffer_bytes: usize,
    /// Frames a session may have waiting before it is closed as a slow consumer.
    pub send_queue: usize,
    pub ping_interval_secs: u64,
    pub pong_timeout_secs: u64,
    pub handshake_timeout_secs: u64,
    /// Open sessions one user may hold on one gateway; more are refused with 429 before the
    /// upgrade.
    pub max_sessions_per_user: usize,
    /// Events replayed per channel on resume; past it the client gets `resync`.
    pub replay_cap: usize,
    /// How long SIGTERM waits for sockets to take their close frames.
    pub drain_secs: u64,
    /// Open connections one client address (an IPv6 /64) may hold, sessions and handshakes
    /// alike; more are closed as they arrive. 0: no cap (behind a proxy every client shares its
    /// address).
    pub max_connections_per_source: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DispatcherConfig {
    /// Receipts, typing and presence fan out only in direct channels and groups up to this size.
    pub small_channel_max: u32,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self { small_channel_max: 100 }
    }
}

impl Default for RestConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8080).into(),
            cors_origins: Vec::new(),
            drain_secs: 10,
            header_timeout_secs: 10,
            max_connections_per_source: 256,
        }
    }
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8081).into(),
            max_message_bytes: 64 * 1024,
            read_buffer_bytes: 4 * 1024,
            max_write_buffer_bytes: 1024 * 1024,
            send_queue: 1024,
            ping_interval_secs: 25,
            pong_timeout_secs: 10,
            handshake_timeout_secs: 10,
            max_sessions_per_user: 16,
            replay_cap: 1000,
            drain_secs: 5,
            max_connections_per_source: 256,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `iss` of every token we mint and accept.
    pub issuer: String,
    /// `aud` of user access tokens.
    pub audience: String,
    /// `aud` of service-principal tokens (internal RPCs only).
    pub internal_audience: String,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    pub service_token_ttl_secs: u64,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_secs: u64,
}

/// The account lifecycle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// How long a deleted account can be restored by signing in before it is erased.
    pub deletion_grace_secs: u64,
    /// How often the sweeper looks for deleted accounts past their grace period.
    pub sweep_interval_secs: u64,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self { deletion_grace_secs: 30 * 24 * 3600, sweep_interval_secs: 600 }
    }
}

/// Statuses, timelines and trends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FeedConfig {
    /// Authors with at least this many followers when they post are not fanned out: their
    /// statuses are merged into their followers' timelines on read.
    pub celebrity_followers: u64,
    /// Entries a home timeline keeps (and reads reach).
    pub timeline_cap: usize,
    /// Followers whose timelines one fan-out step writes (the first step before CreateStatus
    /// answers).
    pub fanout_page: usize,
    /// Statuses of a newly followed user copied into the follower's timeline.
    pub backfill_statuses: usize,
    /// The length of one trends bucket; trends count the last `trends_buckets` of them.
    pub trends_bucket_secs: u64,
    pub trends_buckets: u64,
    /// How often the trends are recomputed.
    pub trends_refresh_secs: u64,
    /// How many tags the trends keep.
    pub trends_kept: usize,
    /// How often background work (fan-out jobs, due scheduled statuses) is looked for when
    /// nothing wakes it.
    pub poll_interval_ms: u64,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            celebrity_followers: 10_000,
            timeline_cap: 1_000,
            fanout_page: 1_000,
            backfill_statuses: 100,
            trends_bucket_secs: 3_600,
            trends_buckets: 24,
            trends_refresh_secs: 60,
            trends_kept: 100,
            poll_interval_ms: 500,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordConfig {
    /// argon2id memory cost in KiB.
    pub memory_kib: u32,
    /// argon2id iterations.
    pub iterations: u32,
    pub parallelism: u32,
    /// Login verifications computed at once; the rest wait, so heartbeats keep flowing on two cores.
    pub max_concurrent_hashes: usize,
    /// Sign-up hashes computed at once, beside (never instead of) the logins' permits.
    pub max_concurrent_signup_hashes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Sustained authenticated calls per second per user, across every service.
    pub user_calls_per_sec: u32,
    /// Burst allowed above the sustained rate.
    pub user_calls_burst: u32,
    /// Failed login attempts per minute per account from one client address (checked before
    /// hashing); past it across addresses, logins to the account are slowed, never refused.
    pub login_per_minute_per_account: u32,
    /// Failed login attempts per minute per client address, across accounts.
    pub login_per_minute_per_source: u32,
    /// Sign-ups per hour per client address.
    pub signups_per_hour_per_source: u32,
    /// Follows per hour per user (anti-spam; unfollows are free).
    pub follows_per_hour_per_user: u32,
    /// Friend requests sent per hour per user.
    pub friend_requests_per_hour_per_user: u32,
    /// Reports filed per hour per user (merged duplicates count too).
    pub reports_per_hour_per_user: u32,
    /// Most users one user may follow.
    pub max_following_per_user: u32,
    /// Proxies (address ranges such as `10.0.0.0/8`, or addresses) whose `X-Forwarded-For`
    /// names the client address these limits count, for calls arriving from them. Empty: none;
    /// the TCP peer is the client.
    pub trusted_proxies: crate::client_addr::TrustedProxies,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter, e.g. "info,chatmesh=debug".
    pub filter: String,
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people.
    #[default]
    Text,
    /// One JSON object per line, with the current span, for log collectors.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./chatmesh-data"),
            node_id: 0,
            grpc: GrpcConfig::default(),
            rest: RestConfig::default(),
            ws: WsConfig::default(),
            dispatcher: DispatcherConfig::default(),
            auth: AuthConfig::default(),
            password: PasswordConfig::default(),
            accounts: AccountsConfig::default(),
            feed: FeedConfig::default(),
            limits: LimitsConfig::default(),
            log: LogConfig::default(),
            peers: PeersConfig::default(),
            search: SearchConfig::default(),
            metrics: MetricsConfig::default(),
            telemetry: TelemetryConfig::default(),
            store: StoreConfig::default(),
            media: MediaConfig::default(),
            redis_url: String::new(),
            redis: RedisConfig::default(),
        }
    }
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 50051).into(),
            internal_listen: None,
            max_message_bytes: 4 * 1024 * 1024,
            max_concurrent_streams: 256,
            default_deadline_ms: 10_000,
            keepalive_secs: 45,
            keepalive_timeout_secs: 20,
            handshake_timeout_secs: 10,
            max_connections_per_source: 256,
            drain_secs: 10,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: "chatmesh".into(),
            audience: "chatmesh".into(),
            internal_audience: "chatmesh-internal".into(),
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 30 * 24 * 3600,
            service_token_ttl_secs: 5 * 60,
            leeway_secs: 30,
        }
    }
}

impl Default for PasswordConfig {
    fn default() -> Self {
        // OWASP: argon2id m=19 MiB, t=2, p=1.
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            max_concurrent_hashes: 1,
            max_concurrent_signup_hashes: 1,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            user_calls_per_sec: 50,
            user_calls_burst: 200,
            login_per_minute_per_account: 10,
            login_per_minute_per_source: 30,
            signups_per_hour_per_source: 20,
            follows_per_hour_per_user: 200,
            friend_requests_per_hour_per_user: 50,
            reports_per_hour_per_user: 20,
            max_following_per_user: 5000,
            trusted_proxies: Default::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { filter: "info,fjall=warn,lsm_tree=warn".into(), format: LogFormat::Text }
    }
}

/// The top-level keys of [`Config`], as the environment names them.
const SECTIONS: &[&str] = &[
    "data_dir",
    "node_id",
    "grpc",
    "rest",
    "ws",
    "dispatcher",
    "auth",
    "password",
    "accounts",
    "feed",
    "limits",
    "log",
    "peers",
    "search",
    "metrics",
    "telemetry",
    "store",
    "media",
    "redis_url",
    "redis",
];

impl Config {
    /// Loads defaults, then `file` (if it exists), then `CHATMESH_*` variables, then `overrides`
    /// (the command line's flags, as a partial document).
    pub fn load(file: Option<&std::path::Path>, overrides: impl Serialize) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment
            // why: other CHATMESH_* variables (CHATMESH_CONFIG, CHATMESH_TEST_*, tooling) are not
            // settings; only those naming a section are read, and unknown keys inside one fail.
            .merge(
                Env::prefixed("CHATMESH_")
                    .filter(|key| {
                        let key = key.as_str().to_ascii_lowercase();
                        SECTIONS.contains(&key.split("__").next().unwrap_or_default())
                    })
                    .split("__"),
            )
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)
    }

    pub fn default_deadline(&self) -> Duration {
        Duration::from_millis(self.grpc.default_deadline_ms)
    }
}

#[cfg(test)]
// why: figment's Jail closures return its large error type by design.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn every_section_can_be_set_from_the_environment() {
        let document = serde_json::to_value(Config::default()).expect("the config serializes");
        let sections: Vec<&String> = document.as_object().expect("an object").keys().collect();
        let missing: Vec<&&String> = sections.iter().filter(|s| !SECTIONS.contains(&s.as_str())).collect();
        assert!(missing.is_empty(), "sections CHATMESH_* variables cannot reach: {missing:?}");
    }

    #[test]
    fn example_file_loads_and_matches_the_defaults() {
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/chatmesh.example.toml");
        let loaded = figment::Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file_exact(&example))
            .extract::<Config>()
            .expect("example config parses");
        assert_eq!(loaded, Config::default(), "the example documents the defaults");
    }

    #[test]
    fn the_container_image_config_loads() {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/container.toml");
        let loaded = figment::Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file_exact(&file))
            .extract::<Config>()
            .expect("the image's config parses");
        assert_eq!(loaded.grpc.listen, "0.0.0.0:50051".parse().unwrap());
        assert_eq!(loaded.data_dir, PathBuf::from("/var/lib/chatmesh"));
    }

    #[test]
    fn env_overrides_file_and_flags_override_env() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("chatmesh.toml", "node_id = 3\n[grpc]\nlisten = \"127.0.0.1:6000\"\n")?;
            jail.set_env("CHATMESH_GRPC__LISTEN", "127.0.0.1:7000");
            jail.set_env("CHATMESH_NODE_ID", "5");
            jail.set_env("CHATMESH_TEST_REDIS_URL", "redis://127.0.0.1:6379");
            jail.set_env("CHATMESH_CONFIG", "chatmesh.toml");
            let flags = serde_json::json!({ "node_id": 9 });
            let config = Config::load(Some(std::path::Path::new("chatmesh.toml")), flags).expect("loads");
            assert_eq!(config.grpc.listen, "127.0.0.1:7000".parse().unwrap());
            assert_eq!(config.node_id, 9);
            Ok(())
        });
    }

    #[test]
    fn the_internal_listener_is_optional_and_checked() {
        figment::Jail::expect_with(|jail| {
            assert_eq!(Config::load(None, serde_json::json!({})).expect("loads").grpc.internal_listen, None);
            jail.set_env("CHATMESH_GRPC__INTERNAL_LISTEN", "0.0.0.0:50052");
            let config = Config::load(None, serde_json::json!({})).expect("loads");
            assert_eq!(config.grpc.internal_listen, Some("0.0.0.0:50052".parse().unwrap()));
            jail.set_env("CHATMESH_GRPC__INTERNAL_LISTEN", "port 50052");
            let err = Config::load(None, serde_json::json!({})).unwrap_err();
            assert!(err.to_string().to_lowercase().contains("internal_listen"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn media_types_and_a_media_origin_of_its_own_can_be_set_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            assert_eq!(Config::load(None, serde_json::json!({})).expect("loads").media.listen, None);
            jail.set_env("CHATMESH_MEDIA__LISTEN", "0.0.0.0:8081");
            jail.set_env("CHATMESH_MEDIA__CONTENT_TYPES", r#"["image/png", "text/plain"]"#);
            let media = Config::load(None, serde_json::json!({})).expect("loads").media;
            assert_eq!(media.listen, Some("0.0.0.0:8081".parse().unwrap()));
            assert_eq!(media.content_types, ["image/png", "text/plain"]);
            Ok(())
        });
    }

    #[test]
    fn a_choice_outside_its_enum_is_refused_naming_key_and_value() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("chatmesh.toml", "[search]\nbackend = \"solr\"\n")?;
            let err = Config::load(Some(std::path::Path::new("chatmesh.toml")), serde_json::json!({})).unwrap_err();
            let message = err.to_string();
            assert!(message.contains("search.backend") && message.contains("solr"), "{message}");
            assert!(message.contains("embedded") && message.contains("elasticsearch"), "{message}");
            jail.set_env("CHATMESH_MEDIA__BACKEND", "ftp");
            // why: figment names a key read from the environment in the environment's case.
            let message = Config::load(None, serde_json::json!({})).unwrap_err().to_string().to_lowercase();
            assert!(message.contains("media.backend") && message.contains("ftp"), "{message}");
            Ok(())
        });
    }

    #[test]
    fn choices_load_in_their_documented_spellings() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "chatmesh.toml",
                "[search]\nsource = \"stream\"\nbackend = \"elasticsearch\"\n[media]\nbackend = \"s3\"\n",
            )?;
            jail.set_env("CHATMESH_LOG__FORMAT", "json");
            let config =
                Config::load(Some(std::path::Path::new("chatmesh.toml")), serde_json::json!({})).expect("loads");
            assert_eq!(
                (config.search.source, config.search.backend, config.media.backend, config.log.format),
                (SearchSource::Stream, SearchBackend::Elasticsearch, MediaBackend::S3, LogFormat::Json)
            );
            let flags = serde_json::json!({ "log": { "format": "xml" } });
            let err = Config::load(None, flags).unwrap_err();
            assert!(err.to_string().contains("log.format") && err.to_string().contains("xml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("chatmesh.toml", "[grpc]\nlisen = \"127.0.0.1:6000\"\n")?;
            let err = Config::load(Some(std::path::Path::new("chatmesh.toml")), serde_json::json!({})).unwrap_err();
            assert!(err.to_string().contains("lisen"), "{err}");
            jail.set_env("CHATMESH_GRPC__LISEN", "127.0.0.1:6000");
            let err = Config::load(None, serde_json::json!({})).unwrap_err();
            assert!(err.to_string().contains("lisen"), "{err}");
            Ok(())
        });
    }
}
