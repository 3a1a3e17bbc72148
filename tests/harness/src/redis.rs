//! The stores on a real redis-server, as SpinKube runs them
//! (deploy/runtime-config.redis.toml): [`RedisKv`] speaks the key-value
//! contract with the commands Spin's Redis backend uses (INCRBY for
//! increment, WATCH/MULTI/EXEC for compare-and-swap, reported as Spin
//! reports it), and [`fresh_store`]
//! gives each test store a Redis database of its own, as the deployment gives
//! each label its own. Needs `redis-server` (Debian's package) on the PATH or
//! in `REDIS_SERVER_BIN`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::process::{Tied, spawn_tied};

use greentic::store::kv::{KeyValue, KvError, Swap, TestKv};

/// Databases the test server offers: one per store a test process opens.
const DATABASES: u32 = 8192;

/// One redis-server per test process, without persistence, stopped when the
/// process ends (see [`crate::process`]).
struct RedisServer {
    port: u16,
    next_db: AtomicU32,
    _server: Tied,
}

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

impl RedisServer {
    fn start() -> RedisServer {
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let bin = find_program(&bin).unwrap_or_else(|| {
            panic!(
                "{bin} not found: install Debian's redis-server (scripts/setup test does) \
                 or set REDIS_SERVER_BIN"
            )
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let output = crate::workspace_dir().join("target/test-output");
        std::fs::create_dir_all(&output).unwrap();
        let log = output.join(format!("redis-{port}.log"));
        let args = [
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--databases",
            &DATABASES.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .map(str::to_owned);
        let server = spawn_tied(&bin, &args, &[], &log, None);
        server.wait_until("redis-server", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        RedisServer {
            port,
            next_db: AtomicU32::new(0),
            _server: server,
        }
    }
}

/// `name` if it is a path to a file, else the first `name` on `PATH`.
fn find_program(name: &str) -> Option<PathBuf> {
    let direct = PathBuf::from(name);
    if name.contains('/') {
        return direct.is_file().then_some(direct);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The URL of a database no other store of this process uses.
pub fn fresh_url() -> String {
    let server = server();
    let db = server.next_db.fetch_add(1, Ordering::Relaxed);
    assert!(db < DATABASES, "more than {DATABASES} Redis test stores");
    format!("redis://127.0.0.1:{}/{db}", server.port)
}

/// A store in a database no other store of this process uses.
pub fn fresh_kv() -> RedisKv {
    RedisKv::open(&fresh_url())
}

/// [`fresh_kv`] behind the tests' instrumentation, for any label.
pub fn fresh_store(_label: &str) -> TestKv {
    TestKv::over(fresh_kv())
}

/// The key-value contract on one Redis database. Connections are pooled but
/// never shared by two operations at once, since WATCH belongs to a
/// connection and tests race threads against one store.
pub struct RedisKv {
    client: redis::Client,
    idle: Mutex<Vec<redis::Connection>>,
}

impl RedisKv {
    pub fn open(url: &str) -> RedisKv {
        RedisKv {
            client: redis::Client::open(url).expect("a valid Redis URL"),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `op` on a connection of its own; one that failed is dropped.
    fn with<T>(
        &self,
        op: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, KvError> {
        let idle = self.idle.lock().unwrap().pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => self.client.get_connection().map_err(unavailable)?,
        };
        let result = op(&mut conn).map_err(unavailable)?;
        self.idle.lock().unwrap().push(conn);
        Ok(result)
    }
}

fn unavailable(e: redis::RedisError) -> KvError {
    KvError::Unavailable(e.to_string())
}

impl KeyValue for RedisKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.with(|c| redis::cmd("GET").arg(key).query(c))
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.with(|c| redis::cmd("SET").arg(key).arg(value).query(c))
    }

    /// MSET, as Spin's Redis backend does `set-many`.
    fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        if pairs.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            let mut cmd = redis::cmd("MSET");
            for (key, value) in pairs {
                cmd.arg(key).arg(value);
            }
            cmd.query::<()>(c)
        })
    }

    fn delete(&self, key: &str) -> Result<(), KvError> {
        self.with(|c| redis::cmd("DEL").arg(key).query::<i64>(c))
            .map(|_| ())
    }

    fn exists(&self, key: &str) -> Result<bool, KvError> {
        self.with(|c| redis::cmd("EXISTS").arg(key).query(c))
    }

    fn get_keys(&self) -> Result<Vec<String>, KvError> {
        self.with(|c| redis::cmd("KEYS").arg("*").query(c))
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.with(|c| redis::cmd("INCRBY").arg(key).arg(delta).query(c))
    }

    /// As Spin's Redis backend does it (spin 4.1, `key-value-redis`): WATCH
    /// and GET for `current`, then MULTI/SET/EXEC, then `UNWATCH <key>`, which
    /// Redis refuses, so Spin reports `cas-failed` whether EXEC wrote or not:
    /// [`Swap::Unsure`]. With `GREENTIC_REDIS_CAS_FIXED=1` it reports what
    /// EXEC did instead, as a fixed Spin would.
    fn swap_reported(&self, key: &str, expected: &[u8], new: &[u8]) -> Result<Swap, KvError> {
        let fixed = std::env::var("GREENTIC_REDIS_CAS_FIXED").is_ok_and(|v| v == "1");
        self.with(|c| {
            redis::cmd("WATCH").arg(key).query::<()>(c)?;
            let current: Option<Vec<u8>> = redis::cmd("GET").arg(key).query(c)?;
            if current.as_deref() != Some(expected) {
                redis::cmd("UNWATCH").query::<()>(c)?;
                return Ok(Swap::Conflict);
            }
            // EXEC answers nil when the watched key changed in between.
            let done: Option<()> = redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(key)
                .arg(new)
                .ignore()
                .query(c)?;
            Ok(match (fixed, done.is_some()) {
                (false, _) => Swap::Unsure,
                (true, true) => Swap::Swapped,
                (true, false) => Swap::Conflict,
            })
        })
    }
}
