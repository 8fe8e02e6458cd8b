//! A Redis Cluster of three masters with a replica each, started by this test
//! (seed test C-01): a master is killed mid-traffic, the cluster promotes its
//! replica, and kurz follows the new topology without a restart.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;
use crate::{spawn_pg, support};

pub struct Node {
    pub port: u16,
    pub child: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One redis-server on a free port, a cluster node if `cluster`. A port found free
/// can be taken by another process before redis-server binds it, so a node that dies
/// at start is retried on a new port.
pub fn start_node(server: &str, dir: &std::path::Path, i: usize, cluster: bool) -> Node {
    let cli = std::path::Path::new(server).with_file_name("redis-cli");
    for attempt in 0..5 {
        let port = crate::support::free_port();
        let log = dir.join(format!("node-{i}-{attempt}.log"));
        let mut child = Command::new(server)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(if cluster {
                vec![
                    "--cluster-enabled".to_owned(),
                    "yes".to_owned(),
                    "--cluster-node-timeout".to_owned(),
                    CLUSTER_NODE_TIMEOUT_MS.to_string(),
                    "--cluster-config-file".to_owned(),
                    format!("nodes-{i}-{attempt}.conf"),
                ]
            } else {
                Vec::new()
            })
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ping = Command::new(&cli)
                .args(["-p", &port.to_string(), "ping"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&ping.stdout).contains("PONG") {
                return Node { port, child };
            }
            if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!(
                    "node {i} did not start on {port}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("redis cluster node {i} did not start");
}

/// Cluster nodes detect a dead master after this long; its replica is then promoted
/// (about a second more: the election). Shorter than the 15 s default so that the
/// test is short; the window it measures scales with it.
const CLUSTER_NODE_TIMEOUT_MS: u64 = 1000;

fn cli(server: &str, port: u16, args: &[&str]) -> String {
    let cli = std::path::Path::new(server).with_file_name("redis-cli");
    let out = Command::new(cli)
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Six nodes: three masters, each with one replica.
fn start_cluster(server: &str, dir: &std::path::Path) -> Vec<Node> {
    let nodes: Vec<Node> = (0..6).map(|i| start_node(server, dir, i, true)).collect();
    let cli_path = std::path::Path::new(server).with_file_name("redis-cli");
    let mut create = Command::new(&cli_path);
    create.arg("--cluster").arg("create");
    for n in &nodes {
        create.arg(format!("127.0.0.1:{}", n.port));
    }
    let out = create
        .args(["--cluster-replicas", "1", "--cluster-yes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = cli(server, nodes[0].port, &["cluster", "info"]).contains("cluster_state:ok");
        // Every replica has finished its first sync: a failover can promote it.
        let synced = nodes
            .iter()
            .filter(|n| cli(server, n.port, &["info", "replication"]).contains("master_link_status:up"))
            .count();
        if ok && synced == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cluster never became ok with 3 synced replicas"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    nodes
}

/// The port of the master serving `key`'s slot, from `CLUSTER NODES`.
fn master_of(server: &str, any_port: u16, key: &str) -> u16 {
    let slot: u32 = cli(server, any_port, &["cluster", "keyslot", key])
        .trim()
        .parse()
        .unwrap();
    for line in cli(server, any_port, &["cluster", "nodes"]).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
            continue;
        }
        for range in &f[8..] {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>())
                && (a..=b).contains(&slot)
            {
                let port = f[1].split('@').next().unwrap().rsplit(':').next().unwrap();
                return port.parse().unwrap();
            }
        }
    }
    panic!("no master serves slot {slot}");
}

/// A pro user's id and API key.
async fn pro_user(app: &TestApp, email: &str) -> (i64, String) {
    let res = app
        .client
        .post(app.url("/api/v1/users"))
        .header("X-API-Key", ADMIN_KEY)
        .json(&json!({ "email": email, "tier": "pro" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    (
        body["id"].as_i64().unwrap(),
        body["api_key"].as_str().unwrap().to_owned(),
    )
}

async fn redis_errors(app: &TestApp) -> f64 {
    let text = app.get("/metrics", None).await.text().await.unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("kurz_redis_errors_total")
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// `X-RateLimit-Remaining` of a create by `key` on `app`.
async fn remaining(app: &TestApp, key: &str, i: usize) -> i64 {
    let res = app
        .create(
            Some(key),
            &json!({ "original_url": format!("https://example.com/c01/rl/{i}") }),
        )
        .await;
    assert_eq!(res.status(), 201);
    res.headers()["x-ratelimit-remaining"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and redis-server (for a Redis Cluster): run scripts/test.sh"]
async fn c01_redis_cluster_master_killed_replica_promoted_kurz_follows_without_restart() {
    let Some(server) = support::server("KURZ_TEST_REDIS_SERVER") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(&server, dir.path());
    let url = format!(
        "redis+cluster://{}",
        nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    );
    let Some(a) = spawn_pg(|c| {
        c.redis.url = Some(url.parse().unwrap());
        c.limits.pro = 1_000_000;
        // One token a second: a shared bucket shows as one count across instances.
        c.limits.free = 60;
    })
    .await
    else {
        return;
    };
    let b = a.twin().await;
    let mut links = Vec::new();
    for i in 0..30 {
        links.push((
            a.create_code(&format!("https://example.com/c01/{i}")).await,
            format!("https://example.com/c01/{i}"),
        ));
    }
    for (code, target) in &links {
        assert_eq!(location(&b.get(&format!("/{code}"), None).await), *target);
    }
    let health: Value = a.get("/health", None).await.json().await.unwrap();
    assert_eq!(health["components"]["cache"], "healthy");
    // Creates by pro users go through the Redis rate limiter, one bucket key each;
    // the master to kill is the one holding the first user's bucket.
    let mut users = Vec::new();
    for i in 0..6 {
        users.push(pro_user(&a, &format!("c01-{i}@example.com")).await);
    }
    let victim_port = master_of(
        &server,
        nodes[0].port,
        &format!("{}rl:pro:{}", a.config.redis.prefix, users[0].0),
    );

    // Redirect and create traffic on both instances; the master dies after 500 ms.
    let t0 = Instant::now();
    let kill_at = Duration::from_millis(500);
    let mut killed_at: Option<Duration> = None;
    let (mut served, mut created) = (0, 0);
    let mut errors_before = redis_errors(&a).await + redis_errors(&b).await;
    let (mut first_error, mut last_error): (Option<Duration>, Option<Duration>) = (None, None);
    let mut round = 0;
    while t0.elapsed() < kill_at + Duration::from_secs(6) {
        if killed_at.is_none() && t0.elapsed() >= kill_at {
            let i = nodes.iter().position(|n| n.port == victim_port).unwrap();
            let mut victim = nodes.remove(i);
            victim.child.kill().unwrap(); // SIGKILL
            victim.child.wait().unwrap();
            killed_at = Some(t0.elapsed());
        }
        for (i, (code, target)) in links.iter().enumerate() {
            let app = if i % 2 == 0 { &a } else { &b };
            let res = app.get(&format!("/{code}"), None).await;
            assert_eq!(res.status(), 302, "redirect failed (killed: {killed_at:?})");
            assert_eq!(location(&res), *target);
            served += 1;
        }
        for (u, (_, key)) in users.iter().enumerate() {
            let app = if (u + round) % 2 == 0 { &a } else { &b };
            let res = app
                .create(
                    Some(key),
                    &json!({ "original_url": format!("https://example.com/c01/new/{round}/{u}") }),
                )
                .await;
            assert_eq!(res.status(), 201, "create failed (killed: {killed_at:?})");
            created += 1;
        }
        round += 1;
        let errors = redis_errors(&a).await + redis_errors(&b).await;
        if errors > errors_before {
            first_error.get_or_insert(t0.elapsed());
            last_error = Some(t0.elapsed());
        }
        errors_before = errors;
    }
    let killed_at = killed_at.unwrap();
    assert!(
        served > 100 && created > 30,
        "{served} redirects, {created} creates"
    );
    // The cluster promoted the replica.
    let alive = nodes[0].port;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cli(&server, alive, &["cluster", "info"]).contains("cluster_state:ok") {
        assert!(Instant::now() < deadline, "the cluster did not fail over");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_ne!(
        master_of(
            &server,
            alive,
            &format!("{}rl:pro:{}", a.config.redis.prefix, users[0].0)
        ),
        victim_port
    );

    // Rate limits are shared again: one bucket counted down by both instances.
    let free_key = a.user("c01-free@example.com", "free").await;
    let resumed = Instant::now();
    let mut i = 0;
    crate::support::wait_for(
        "rate limits shared across instances again",
        Duration::from_millis(100),
        async || {
            i += 2;
            let on_a = remaining(&a, &free_key, i).await;
            let on_b = remaining(&b, &free_key, i + 1).await;
            on_b == on_a - 1
        },
    )
    .await;
    let rate_limits_back = resumed.elapsed();
    // Invalidation works again: a change on B reaches A's cache.
    let (code, _) = &links[0];
    assert_eq!(a.get(&format!("/{code}"), None).await.status(), 302);
    b.patch(
        code,
        ADMIN_KEY,
        &json!({ "original_url": "https://example.com/c01/changed" }),
    )
    .await;
    let changed = Instant::now();
    crate::support::wait_for(
        "the change to reach A over pub/sub",
        Duration::from_millis(50),
        async || location(&a.get(&format!("/{code}"), None).await) == "https://example.com/c01/changed",
    )
    .await;
    let invalidation = changed.elapsed();
    assert!(
        invalidation < Duration::from_secs(1),
        "invalidation took {invalidation:?}"
    );
    let window = match (first_error, last_error) {
        (Some(_), Some(last)) => last.saturating_sub(killed_at),
        _ => Duration::ZERO,
    };
    println!(
        "FAILOVER-FIGURES scenario=C-01 redirects_failed_ms=0 creates_failed_ms=0 acked_writes_lost=0 \
         clicks_lost=n/a redis_calls_failed_ms={} rate_limits_shared_after_ms={} invalidation_ms={} \
         recovery=automatic redirects={served} creates={created}",
        window.as_millis(),
        rate_limits_back.as_millis(),
        invalidation.as_millis()
    );
}
