use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use greentic::host::{Host, OutboundError};
use greentic::http::{Request, Response};
use greentic::store::kv::{KeyValue, KvError, Swap};
use spin_sdk::http::IncomingRequest;
use spin_sdk::key_value::{Error as SpinKvError, Store};
use spin_sdk::wit::wasi::keyvalue::{atomics, batch, store as wasi_store};

/// The host as Spin provides it to the running component.
pub struct SpinHost;

impl Host for SpinHost {
    fn open_store(&self, label: &str) -> Result<Box<dyn KeyValue + '_>, KvError> {
        let store = Store::open(label).map_err(|e| kv_error(label, e))?;
        Ok(Box::new(SpinStore {
            label: label.to_owned(),
            store,
        }))
    }

    fn variable(&self, name: &str) -> Option<String> {
        spin_sdk::variables::get(name).ok()
    }

    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }

    fn log(&self, line: &str) {
        // Spin collects a component's stderr as its log.
        eprintln!("{line}");
    }

    fn random(&self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("WASI always provides random bytes");
    }

    /// Blocks on Spin's executor: handlers are synchronous and the request
    /// body has been read in full before they run, so nothing else is pending.
    fn send(&self, base_url: &str, req: Request) -> Result<Response, OutboundError> {
        let mut outgoing = spin_sdk::http::Request::builder();
        outgoing.method(method(&req.method)).uri(format!(
            "{base_url}{}{}{}",
            req.path,
            if req.query.is_empty() { "" } else { "?" },
            req.query
        ));
        for (name, value) in &req.headers {
            outgoing.header(name, String::from_utf8_lossy(value).into_owned());
        }
        let outgoing = outgoing.body(req.body).build();
        let answer: spin_sdk::http::Response = spin_sdk::http::run(spin_sdk::http::send(outgoing))
            .map_err(|e| {
                let why = e.to_string();
                if why.contains("HttpRequestDenied") || why.contains("not allowed") {
                    OutboundError::Denied(base_url.to_owned())
                } else {
                    OutboundError::Failed(why)
                }
            })?;
        Ok(Response {
            status: *answer.status(),
            headers: answer
                .headers()
                .map(|(name, value)| {
                    (
                        name.to_owned(),
                        value.as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
            body: answer.into_body(),
        })
    }
}

struct SpinStore {
    label: String,
    store: Store,
}

impl SpinStore {
    /// The same store through `wasi:keyvalue`, which has the atomics and
    /// batches (`fermyon:spin/key-value` does not). Opened per call: it is an
    /// in-memory handle, and only counters, compare-and-swap and batches need it.
    fn bucket(&self) -> Result<wasi_store::Bucket, KvError> {
        wasi_store::open(&self.label).map_err(|e| wasi_error(&self.label, e))
    }
}

impl KeyValue for SpinStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.store.get(key).map_err(|e| kv_error(&self.label, e))
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.store
            .set(key, value)
            .map_err(|e| kv_error(&self.label, e))
    }

    fn delete(&self, key: &str) -> Result<(), KvError> {
        self.store.delete(key).map_err(|e| kv_error(&self.label, e))
    }

    /// `wasi:keyvalue/batch` `set-many`: one SQLite transaction, one Redis MSET.
    fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        let bucket = self.bucket()?;
        batch::set_many(&bucket, pairs).map_err(|e| wasi_error(&self.label, e))
    }

    fn exists(&self, key: &str) -> Result<bool, KvError> {
        self.store.exists(key).map_err(|e| kv_error(&self.label, e))
    }

    fn get_keys(&self) -> Result<Vec<String>, KvError> {
        self.store.get_keys().map_err(|e| kv_error(&self.label, e))
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        let bucket = self.bucket()?;
        atomics::increment(&bucket, key, delta).map_err(|e| wasi_error(&self.label, e))
    }

    /// `cas-failed` is [`Swap::Unsure`]: Spin's Redis backend reports it after
    /// swaps that wrote as well (spin-notes.md); the caller reads back.
    fn swap_reported(&self, key: &str, expected: &[u8], new: &[u8]) -> Result<Swap, KvError> {
        let bucket = self.bucket()?;
        let cas = atomics::Cas::new(&bucket, key).map_err(|e| wasi_error(&self.label, e))?;
        if cas
            .current()
            .map_err(|e| wasi_error(&self.label, e))?
            .as_deref()
            != Some(expected)
        {
            return Ok(Swap::Conflict);
        }
        match atomics::swap(cas, new) {
            Ok(()) => Ok(Swap::Swapped),
            Err(atomics::CasError::CasFailed(_)) => Ok(Swap::Unsure),
            Err(atomics::CasError::StoreError(e)) => Err(wasi_error(&self.label, e)),
        }
    }
}

fn method(name: &str) -> spin_sdk::http::Method {
    use spin_sdk::http::Method;
    match name {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "HEAD" => Method::Head,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_owned()),
    }
}

fn kv_error(label: &str, e: SpinKvError) -> KvError {
    match e {
        SpinKvError::AccessDenied => KvError::AccessDenied(label.to_owned()),
        SpinKvError::NoSuchStore => KvError::NoSuchStore(label.to_owned()),
        SpinKvError::StoreTableFull => KvError::Unavailable("too many stores open".into()),
        SpinKvError::Other(why) => KvError::Unavailable(why),
    }
}

fn wasi_error(label: &str, e: wasi_store::Error) -> KvError {
    match e {
        wasi_store::Error::AccessDenied => KvError::AccessDenied(label.to_owned()),
        wasi_store::Error::NoSuchStore => KvError::NoSuchStore(label.to_owned()),
        wasi_store::Error::Other(why) => KvError::Unavailable(why),
    }
}

/// Reads Spin's request into the handlers' type, keeping at most
/// `body_limit + 1` bytes: enough for the handler to answer 413 without
/// buffering an arbitrarily large body.
pub async fn read_request(req: IncomingRequest, body_limit: usize) -> Request {
    let method = req.method().to_string().to_ascii_uppercase();
    let path_and_query = req.path_with_query().unwrap_or_else(|| "/".into());
    let headers = req
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect();
    let mut body = Vec::new();
    let mut stream = req.into_body_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => body.extend_from_slice(&bytes),
            Err(_) => break,
        }
        if body.len() > body_limit {
            body.truncate(body_limit + 1);
            break;
        }
    }
    let mut request = Request::new(&method, &path_and_query);
    request.headers = headers;
    request.body = body;
    request
}

pub fn into_spin_response(response: Response) -> spin_sdk::http::Response {
    let mut builder = spin_sdk::http::Response::builder();
    builder.status(response.status);
    for (name, value) in &response.headers {
        builder.header(name, value);
    }
    builder.body(response.body).build()
}
