//! OpenTelemetry across processes: a REST gateway and the services run as two `chatmesh serve`
//! processes exporting to a collector stand-in (a tonic server implementing the OTLP collector
//! services); one CreateChat over REST is one trace, gateway → chat service → chat store.

mod common;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{Process, chatmesh, connect, free_addr, group, launch, sign_up};
use opentelemetry_proto::tonic::{
    collector::{
        metrics::v1::{
            ExportMetricsServiceRequest, ExportMetricsServiceResponse,
            metrics_service_server::{MetricsService, MetricsServiceServer},
        },
        trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
            trace_service_server::{TraceService, TraceServiceServer},
        },
    },
    common::v1::any_value::Value as AnyValue,
};
use serde_json::{Value, json};

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
}

#[derive(Default, Clone)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
    metric_names: Arc<Mutex<Vec<(String, String)>>>,
}

fn service_name(resource: Option<&opentelemetry_proto::tonic::resource::v1::Resource>) -> String {
    resource
        .into_iter()
        .flat_map(|r| &r.attributes)
        .find(|a| a.key == "service.name")
        .and_then(|a| a.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            AnyValue::StringValue(s) => s.clone(),
            other => format!("{other:?}"),
        })
        .unwrap_or_default()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let service = service_name(resource.resource.as_ref());
            for scope in resource.scope_spans {
                spans.extend(scope.spans.into_iter().map(|s| Span {
                    service: service.clone(),
                    name: s.name,
                    trace_id: s.trace_id,
                    span_id: s.span_id,
                    parent_span_id: s.parent_span_id,
                }));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut names = self.metric_names.lock().unwrap();
        for resource in request.into_inner().resource_metrics {
            let service = service_name(resource.resource.as_ref());
            for scope in resource.scope_metrics {
                names.extend(scope.metrics.into_iter().map(|m| (service.clone(), m.name)));
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

fn spawn(data: &Path, parts: &[&str], grpc: SocketAddr, rest: SocketAddr, env: &[(&str, String)]) -> Process {
    let mut command = chatmesh(data);
    command
        .arg("serve")
        .args(parts)
        .args(["--grpc-listen", &grpc.to_string(), "--rest-listen", &rest.to_string()])
        .args(["--ws-listen", &free_addr().to_string(), "--metrics-listen", "127.0.0.1:0"])
        .env("CHATMESH_LOG__FILTER", "warn")
        // why: export soon after a span ends, so the test need not wait the default 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    launch(command, Some(&data.join(format!("{}.log", parts.join("-")))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_create_chat_is_one_trace_from_the_gateway_to_the_store() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(collector.clone()))
        .add_service(MetricsServiceServer::new(collector.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);

    // one data dir, as one Secret of signing keys is shared by every Deployment: the gateway
    // starts once the services have written the keys, and opens no store of its own
    let dir = tempfile::tempdir().unwrap();
    let (grpc, rest) = (free_addr(), free_addr());
    let endpoint = ("CHATMESH_TELEMETRY__OTLP_ENDPOINT", format!("http://{otlp}"));
    let interval = ("CHATMESH_TELEMETRY__METRICS_INTERVAL_MS", "300".to_owned());
    let _services = spawn(
        dir.path(),
        &["user", "channel", "chat", "dispatcher"],
        grpc,
        free_addr(),
        &[endpoint.clone(), interval.clone()],
    );
    let channel = connect(grpc).await;
    let peer = format!("http://{grpc}");
    let _gateway = spawn(
        dir.path(),
        &["rest"],
        free_addr(),
        rest,
        &[
            endpoint,
            interval,
            ("CHATMESH_PEERS__USER", peer.clone()),
            ("CHATMESH_PEERS__CHANNEL", peer.clone()),
            ("CHATMESH_PEERS__CHAT", peer.clone()),
            ("CHATMESH_PEERS__DISPATCHER", peer),
        ],
    );

    let (_, token) = sign_up(&channel, "trace@example.com").await;
    let channel_id = group(&channel, &token, &[]).await;
    let http = reqwest::Client::new();
    let started = Instant::now();
    let chat_id = loop {
        let body = json!({ "channelId": channel_id, "text": "traced" });
        let sent =
            http.post(format!("http://{rest}/api/v1/chats")).bearer_auth(&token).body(body.to_string()).send().await;
        if let Ok(response) = sent {
            let text = response.text().await.unwrap();
            let answer: Value = serde_json::from_str(&text).unwrap_or_default();
            if let Some(id) = answer["chat"]["chatId"].as_str() {
                break id.to_owned();
            }
            assert!(started.elapsed() < Duration::from_secs(30), "no chat created: {text}");
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the REST gateway did not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!chat_id.is_empty());

    // the gateway's span, the chat service's span under it, the store's span under that
    let deadline = Instant::now() + Duration::from_secs(20);
    let (gateway, rpc, store) = loop {
        let spans = collector.spans.lock().unwrap().clone();
        let found = spans.iter().filter(|s| s.name == "POST /api/v1/chats").find_map(|gateway| {
            let in_trace: Vec<&Span> = spans.iter().filter(|s| s.trace_id == gateway.trace_id).collect();
            let rpc = in_trace.iter().find(|s| s.name == "chatmesh.chat.v1.ChatService/CreateChat")?;
            let store = in_trace.iter().find(|s| s.name == "chat_store.create_chat")?;
            Some((gateway.clone(), (*rpc).clone(), (*store).clone()))
        });
        if let Some(found) = found {
            break found;
        }
        let names: Vec<_> = spans.iter().map(|s| format!("{}: {}", s.service, s.name)).collect();
        assert!(Instant::now() < deadline, "no complete trace for the CreateChat; spans seen: {names:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let spans = collector.spans.lock().unwrap().clone();
    let by_id: HashMap<&[u8], &Span> = spans.iter().map(|s| (s.span_id.as_slice(), s)).collect();
    let ancestors = |span: &Span| {
        let mut chain = Vec::new();
        let mut parent = span.parent_span_id.as_slice();
        while let Some(up) = by_id.get(parent) {
            chain.push(up.span_id.clone());
            parent = up.parent_span_id.as_slice();
        }
        chain
    };
    assert_eq!(gateway.service, "chatmesh-rest");
    assert_eq!(rpc.service, "chatmesh-channel+chat+dispatcher+user");
    assert_eq!(store.service, rpc.service);
    assert!(ancestors(&rpc).contains(&gateway.span_id), "the chat service's span continues the gateway's trace");
    assert!(ancestors(&store).contains(&rpc.span_id), "the store's span is under the chat service's");
    println!(
        "one trace: {} → {} → {} ({} spans in it)",
        gateway.name,
        rpc.name,
        store.name,
        spans.iter().filter(|s| s.trace_id == gateway.trace_id).count()
    );

    // the same processes push their metrics to the collector
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let names = collector.metric_names.lock().unwrap().clone();
        let has = |service: &str, metric: &str| names.iter().any(|(s, m)| s == service && m == metric);
        if has("chatmesh-rest", "chatmesh_http_server_requests_total")
            && has("chatmesh-channel+chat+dispatcher+user", "chatmesh_rpc_server_requests_total")
        {
            break;
        }
        assert!(Instant::now() < deadline, "metrics not exported; seen: {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
