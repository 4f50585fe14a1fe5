//! A real OTLP/HTTP trace receiver on loopback: it decodes each export (protobuf or JSON, with the
//! `opentelemetry-proto` definitions) into [`Span`]s, and answers with the status a test sets.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;

use super::load::eventually;

/// One received span, its ids in lower-case hex and its attributes as text.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    /// OTLP's `SpanKind`: 1 internal, 2 server, 3 client.
    pub kind: i32,
    pub attributes: HashMap<String, String>,
    /// Linked (trace id, span id) pairs.
    pub links: Vec<(String, String)>,
    /// OTLP's status code: 0 unset, 1 ok, 2 error.
    pub status: i32,
    pub events: Vec<String>,
    pub trace_state: String,
    /// The resource's attributes (`service.name`, ...).
    pub resource: HashMap<String, String>,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

pub struct OtlpReceiver {
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    status: Arc<AtomicU16>,
    /// How long each export waits for its answer, in milliseconds.
    delay_ms: Arc<AtomicU64>,
    exports: Arc<AtomicUsize>,
}

impl OtlpReceiver {
    pub async fn start() -> OtlpReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let receiver = OtlpReceiver {
            addr: listener.local_addr().expect("addr"),
            spans: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
            delay_ms: Arc::default(),
            exports: Arc::default(),
        };
        let (spans, status, exports, delay) = (
            receiver.spans.clone(),
            receiver.status.clone(),
            receiver.exports.clone(),
            receiver.delay_ms.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (spans, status, exports, delay) = (
                    spans.clone(),
                    status.clone(),
                    exports.clone(),
                    delay.clone(),
                );
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (spans, status, exports, delay) = (
                            spans.clone(),
                            status.clone(),
                            exports.clone(),
                            delay.clone(),
                        );
                        async move {
                            exports.fetch_add(1, Ordering::SeqCst);
                            let wait = delay.load(Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(wait)).await;
                            let path_ok = req.uri().path() == "/v1/traces";
                            let content_type = req.headers().get("content-type").cloned();
                            let protobuf = content_type
                                .as_ref()
                                .is_some_and(|v| v == "application/x-protobuf");
                            let json = content_type
                                .as_ref()
                                .is_some_and(|v| v == "application/json");
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            let code = status.load(Ordering::SeqCst);
                            if code == 200 && path_ok && (protobuf || json) {
                                let body = body.unwrap_or_default();
                                let request = if json {
                                    serde_json::from_slice::<ExportTraceServiceRequest>(&body)
                                        .expect("an OTLP/JSON trace export")
                                } else {
                                    ExportTraceServiceRequest::decode(body)
                                        .expect("an OTLP trace export")
                                };
                                if let Ok(mut all) = spans.lock() {
                                    all.extend(flatten(request));
                                }
                            }
                            let code = if path_ok && (protobuf || json) {
                                code
                            } else {
                                400
                            };
                            let mut resp = hyper::Response::new(Full::new(Bytes::new()));
                            *resp.status_mut() = hyper::StatusCode::from_u16(code).expect("status");
                            // 503 asks for a retry after 1 s, 429 after 3 s.
                            let retry_after = match code {
                                503 => Some("1"),
                                429 => Some("3"),
                                _ => None,
                            };
                            if let Some(seconds) = retry_after {
                                resp.headers_mut().insert(
                                    "retry-after",
                                    hyper::header::HeaderValue::from_static(seconds),
                                );
                            }
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        receiver
    }

    /// The base endpoint, as `[tracing] endpoint` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer every export with `code` from now on (200 stores the spans; 503 and 429 come with a
    /// `Retry-After` of 1 and 3 seconds).
    pub fn answer(&self, code: u16) {
        self.status.store(code, Ordering::SeqCst);
    }

    /// Wait this long before answering each export from now on.
    pub fn delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Exports received, whatever the answer.
    pub fn exports(&self) -> usize {
        self.exports.load(Ordering::SeqCst)
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The spans of the trace whose server span has `edgewarden.request_id = request_id`, once
    /// all `count` of them have arrived.
    pub async fn trace_of(&self, request_id: &str, count: usize) -> Vec<Span> {
        let find = || {
            let spans = self.spans();
            let server = spans
                .iter()
                .find(|s| s.attr("edgewarden.request_id") == Some(request_id))?;
            let trace: Vec<Span> = spans
                .iter()
                .filter(|s| s.trace_id == server.trace_id)
                .cloned()
                .collect();
            (trace.len() >= count).then_some(trace)
        };
        let arrived = eventually(Duration::from_secs(10), async || find().is_some()).await;
        assert!(
            arrived,
            "no trace of {count} spans for request {request_id}; received: {:#?}",
            self.spans()
        );
        find().unwrap_or_default()
    }
}

fn flatten(request: ExportTraceServiceRequest) -> Vec<Span> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                out.push(Span {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    attributes: attributes(&span.attributes),
                    links: span
                        .links
                        .iter()
                        .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                        .collect(),
                    status: span.status.map_or(0, |s| s.code),
                    events: span.events.into_iter().map(|e| e.name).collect(),
                    trace_state: span.trace_state,
                    resource: resource.clone(),
                });
            }
        }
    }
    out
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map_or(String::new(), text),
            )
        })
        .collect()
}

fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
