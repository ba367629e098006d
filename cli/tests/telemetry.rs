//! OpenTelemetry across processes: a REST gateway and the services run as two `chatmesh serve`
//! processes exporting to a collector stand-in (a tonic server implementing the OTLP collector
//! services); one CreateChat over REST is one trace, gateway → chat service → chat store.

mod common;

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
};

use common::{Server, chatmesh, connect, eventually, group, sign_up, until};
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

async fn spawn(data: &Path, parts: &[&str], env: &[(&str, String)]) -> Server {
    let mut command = chatmesh(data);
    command
        .arg("serve")
        .args(parts)
        .env("CHATMESH_LOG__FILTER", "warn")
        // why: export soon after a span ends, so the test need not wait the default 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    common::start(command, Some(&data.join(format!("{}.log", parts.join("-"))))).await
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
    let endpoint = ("CHATMESH_TELEMETRY__OTLP_ENDPOINT", format!("http://{otlp}"));
    let interval = ("CHATMESH_TELEMETRY__METRICS_INTERVAL_MS", "300".to_owned());
    let services =
        spawn(dir.path(), &["user", "channel", "chat", "dispatcher"], &[endpoint.clone(), interval.clone()]).await;
    let channel = connect(services.grpc()).await;
    let peer = format!("http://{}", services.grpc());
    let rest_gateway = spawn(
        dir.path(),
        &["rest"],
        &[
            endpoint,
            interval,
            ("CHATMESH_PEERS__USER", peer.clone()),
            ("CHATMESH_PEERS__CHANNEL", peer.clone()),
            ("CHATMESH_PEERS__CHAT", peer.clone()),
            ("CHATMESH_PEERS__DISPATCHER", peer),
        ],
    )
    .await;
    let rest = rest_gateway.rest();

    let (_, token) = sign_up(&channel, "trace@example.com").await;
    let channel_id = group(&channel, &token, &[]).await;
    let body = json!({ "channelId": channel_id, "text": "traced" });
    let sent = reqwest::Client::new().post(format!("http://{rest}/api/v1/chats")).bearer_auth(&token);
    let text = sent.body(body.to_string()).send().await.expect("the REST gateway answers").text().await.unwrap();
    let answer: Value = serde_json::from_str(&text).unwrap_or_default();
    assert!(answer["chat"]["chatId"].as_str().is_some_and(|id| !id.is_empty()), "a chat created: {text}");

    // the gateway's span, the chat service's span under it, the store's span under that
    let trace = until(|| {
        let spans = collector.spans.lock().unwrap().clone();
        let found = spans.iter().filter(|s| s.name == "POST /api/v1/chats").find_map(|gateway| {
            let in_trace: Vec<&Span> = spans.iter().filter(|s| s.trace_id == gateway.trace_id).collect();
            let rpc = in_trace.iter().find(|s| s.name == "chatmesh.chat.v1.ChatService/CreateChat")?;
            let store = in_trace.iter().find(|s| s.name == "chat_store.create_chat")?;
            Some((gateway.clone(), (*rpc).clone(), (*store).clone()))
        });
        std::future::ready(found)
    })
    .await;
    let (gateway, rpc, store) = trace.unwrap_or_else(|| {
        let spans = collector.spans.lock().unwrap();
        let names: Vec<_> = spans.iter().map(|s| format!("{}: {}", s.service, s.name)).collect();
        panic!("no complete trace for the CreateChat; spans seen: {names:#?}")
    });
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
    let has = |service: &str, metric: &str| {
        collector.metric_names.lock().unwrap().iter().any(|(s, m)| s == service && m == metric)
    };
    eventually("both processes export their metrics", || {
        std::future::ready(
            has("chatmesh-rest", "chatmesh_http_server_requests_total")
                && has("chatmesh-channel+chat+dispatcher+user", "chatmesh_rpc_server_requests_total"),
        )
    })
    .await;
}
