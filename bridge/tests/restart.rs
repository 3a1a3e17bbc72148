//! The bridge binary restarted in the middle of a stream of publishes and
//! deliveries: no acknowledged message is lost, none reaches the wrong endpoint.
//! Once with SIGTERM (graceful: in-flight deliveries finish), once with SIGKILL
//! (a crash: JetStream redelivers what was not acked).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::*;

const MESSAGES: usize = 120;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    Graceful,
    Crash,
}

fn subject_for(i: usize) -> String {
    let tenant = ["acme", "bigcorp", "initech"][i % 3];
    let direction = if i.is_multiple_of(2) {
        "ingress"
    } else {
        "egress"
    };
    format!("greentic.messaging.{direction}.prod.{tenant}.default.web")
}

/// A bridge's configuration file (on a free port), with its log beside it:
/// what each process of a test is started from.
struct ProcessConfig {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    log: std::path::PathBuf,
    port: u16,
}

impl ProcessConfig {
    fn write(nats: &NatsServer, specs: &[DeliverySpec]) -> ProcessConfig {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let path = dir.path().join("bridge.toml");
        std::fs::write(
            &path,
            config_toml(&format!("127.0.0.1:{port}"), &nats.url(), specs),
        )
        .unwrap();
        ProcessConfig {
            log: dir.path().join("bridge.log"),
            path,
            port,
            _dir: dir,
        }
    }

    fn spawn(&self) -> BridgeProcess {
        BridgeProcess::spawn(&self.path, self.port, &self.log)
    }
}

/// Publishes message `i` until the bridge (whichever is up) acknowledges it.
async fn publish_until_acked(http: &reqwest::Client, base: &str, i: usize) {
    let url = format!("{base}/v1/publish/{}", subject_for(i));
    loop {
        let sent = http
            .post(&url)
            .bearer_auth(PUBLISH_TOKEN)
            .header("Nats-Msg-Id", format!("m-{i}"))
            .body(payload(i, 200))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if sent.is_ok_and(|r| r.status() == 200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn restart_mid_stream(stop: Stop) {
    let nats = NatsServer::start();
    // Receivers hold their answers until opened, so the stop finds deliveries
    // in flight (and more fetched behind them) for certain.
    let ingress = Receiver::start_gated(Duration::ZERO, false, |_| (200, String::new())).await;
    let egress = Receiver::start_gated(Duration::ZERO, false, |_| (200, String::new())).await;
    let mut specs = [
        DeliverySpec::ingress(ingress.url.clone()),
        DeliverySpec::egress(egress.url.clone()),
    ];
    for spec in &mut specs {
        spec.max_attempts = 10;
        spec.timeout = "1s";
        // `concurrency` deliveries stuck in flight below, whatever the tenant.
        spec.tenant_concurrency = Some(spec.concurrency);
        // After a crash, JetStream redelivers unacked messages after ack_wait.
        // After a graceful stop nothing may wait for it: the bridge finished or
        // handed back everything, so a long ack_wait must not slow recovery.
        spec.ack_wait = Some(match stop {
            Stop::Crash => "3s",
            Stop::Graceful => "5m",
        });
    }
    let config = ProcessConfig::write(&nats, &specs);
    let first = config.spawn();
    first.wait_healthy().await;
    let base = first.base.clone();

    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let publisher = {
        let acked = acked.clone();
        let base = base.clone();
        tokio::spawn(async move {
            let http = http_client();
            for i in 0..MESSAGES {
                publish_until_acked(&http, &base, i).await;
                acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };

    // Stop the first bridge while messages are still coming and going, with
    // `concurrency` deliveries of each kind stuck in flight.
    eventually("a third acknowledged, deliveries in flight", || async {
        acked.load(std::sync::atomic::Ordering::SeqCst) >= MESSAGES / 3
            && ingress.seen().len() >= 4
            && egress.seen().len() >= 4
    })
    .await;
    let acked_at_stop = acked.load(std::sync::atomic::Ordering::SeqCst);
    let delivered_at_stop = ingress.seen().len() + egress.seen().len();
    match stop {
        Stop::Graceful => {
            first.signal_term();
            // Shutdown has begun once the listener is gone; only then let the
            // receivers answer, so the in-flight deliveries finish during it.
            eventually("listener closed", || async {
                std::net::TcpStream::connect(("127.0.0.1", config.port)).is_err()
            })
            .await;
            ingress.open();
            egress.open();
            assert!(first.wait().success(), "clean exit on SIGTERM");
        }
        Stop::Crash => {
            first.crash();
            ingress.open();
            egress.open();
        }
    }
    let second = config.spawn();
    second.wait_healthy().await;
    publisher.await.unwrap();

    // Every acknowledged message reaches the endpoint of its own direction...
    let expected: BTreeMap<String, String> = (0..MESSAGES)
        .map(|i| (format!("m-{i}"), subject_for(i)))
        .collect();
    eventually("every message delivered", || async {
        let mut seen: Vec<String> = ingress.seen().into_iter().map(|r| r.msg_id).collect();
        seen.extend(egress.seen().into_iter().map(|r| r.msg_id));
        expected.keys().all(|id| seen.contains(id))
    })
    .await;
    // ...and nothing reaches the other one, or arrives under another subject.
    for (receiver, direction) in [(&ingress, "ingress"), (&egress, "egress")] {
        for r in receiver.seen() {
            let want = expected.get(&r.msg_id).expect("only published ids");
            assert_eq!(&r.subject, want, "{}", r.msg_id);
            assert!(
                r.subject
                    .starts_with(&format!("greentic.messaging.{direction}.")),
                "{} delivered to the {direction} endpoint",
                r.subject
            );
            assert_eq!(
                r.body,
                payload(r.msg_id[2..].parse().unwrap(), 200).as_bytes()
            );
        }
    }
    let all: Vec<Received> = ingress.seen().into_iter().chain(egress.seen()).collect();
    eprintln!(
        "stopped after {acked_at_stop} acked / {delivered_at_stop} delivered; \
         {} deliveries for {MESSAGES} messages, {} redelivered (attempt > 1)",
        all.len(),
        all.iter().filter(|r| r.attempt > 1).count()
    );
    if stop == Stop::Graceful {
        // In-flight deliveries finished and were acked before the exit, and
        // unstarted ones were handed back: the endpoints saw each message once.
        assert_eq!(
            all.len(),
            MESSAGES,
            "no delivery repeated after a graceful stop"
        );
    }
    assert!(second.terminate().success());
    let js = js(&nats).await;
    assert_eq!(
        stream_len(&js, "GREENTIC_DLQ").await,
        0,
        "nothing dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_restart_mid_stream_loses_and_misroutes_nothing() {
    restart_mid_stream(Stop::Graceful).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_stream_loses_and_misroutes_nothing() {
    restart_mid_stream(Stop::Crash).await;
}

/// Messages stored while a bridge stops (published straight to NATS, every
/// millisecond, before, during and after the stop) all reach the next bridge
/// at once: none was sent to the stopping bridge's last pull request and lost
/// there, which would hold it until `ack_wait` (five minutes here) ran out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_stored_while_a_bridge_stops_wait_for_no_ack_wait() {
    let nats = NatsServer::start();
    let ingress = Receiver::ok().await;
    let egress = Receiver::ok().await;
    let mut specs = [
        DeliverySpec::ingress(ingress.url.clone()),
        DeliverySpec::egress(egress.url.clone()),
    ];
    for spec in &mut specs {
        spec.ack_wait = Some("5m");
    }
    let config = ProcessConfig::write(&nats, &specs);
    let first = config.spawn();
    first.wait_healthy().await;

    let stop = tokio::sync::watch::channel(false);
    let publisher = {
        let js = js(&nats).await;
        let mut stopped = stop.1.clone();
        tokio::spawn(async move {
            let mut published = 0;
            while !*stopped.borrow_and_update() {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", format!("m-{published}").as_str());
                js.publish_with_headers(
                    subject_for(published),
                    headers,
                    payload(published, 64).into(),
                )
                .await
                .unwrap()
                .await
                .unwrap();
                published += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            published
        })
    };
    eventually("deliveries under way", || async {
        ingress.seen().len() >= 20 && egress.seen().len() >= 20
    })
    .await;
    assert!(first.terminate().success(), "clean exit on SIGTERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.0.send_replace(true);
    let published = publisher.await.unwrap();

    let second = config.spawn();
    second.wait_healthy().await;
    eventually("every stored message delivered", || async {
        let seen: std::collections::HashSet<String> = ingress
            .seen()
            .into_iter()
            .chain(egress.seen())
            .map(|r| r.msg_id)
            .collect();
        (0..published).all(|i| seen.contains(&format!("m-{i}")))
    })
    .await;
    assert!(second.terminate().success());
}

/// A stop whose deliveries in flight outlast `shutdown_timeout` (the
/// endpoint never answers, its timeout is longer) still hands back every
/// message that had not started, within the stop's budget: the next bridge
/// gets them at once, not after `ack_wait` (five minutes). The ones in flight
/// are abandoned; JetStream offers them again after `ack_wait`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_times_out_still_hands_back_what_had_not_started() {
    const QUEUED: usize = 12;
    let nats = NatsServer::start();
    let receiver = Receiver::start_gated(Duration::ZERO, false, |_| (200, String::new())).await;
    let mut spec = DeliverySpec::ingress(receiver.url.clone());
    spec.concurrency = 2;
    spec.timeout = "60s";
    spec.ack_wait = Some("5m");
    let config = ProcessConfig::write(&nats, &[spec]);
    let first = config.spawn();
    first.wait_healthy().await;
    let http = http_client();
    for i in 0..QUEUED {
        // Even ids are ingress messages (of three tenants), none in a session.
        publish_until_acked(&http, &first.base, i * 2).await;
    }
    eventually("both slots stuck in flight", || async {
        receiver.seen().len() == 2
    })
    .await;
    let stuck: Vec<String> = receiver.seen().into_iter().map(|r| r.msg_id).collect();
    let stopping = std::time::Instant::now();
    assert!(first.terminate().success(), "exit on SIGTERM");
    // shutdown_timeout (5 s), the second of cleanup it is given, and the
    // flush of acks (at most 2 s) bound the stop.
    assert!(stopping.elapsed() < Duration::from_secs(10));

    receiver.open();
    let second = config.spawn();
    second.wait_healthy().await;
    eventually("every message that had not started delivered", || async {
        let seen: Vec<String> = receiver.seen().into_iter().map(|r| r.msg_id).collect();
        (0..QUEUED)
            .map(|i| format!("m-{}", i * 2))
            .filter(|id| !stuck.contains(id))
            .all(|id| seen.contains(&id))
    })
    .await;
    assert!(second.terminate().success());
}
